// Command projector projects the EVENTS stream into Postgres timelines and
// serves the timeline API.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/lifecycle"
	"github.com/eventline/eventline/internal/projector"
)

func main() {
	var cfg projector.AppConfig
	set := config.New("projector")
	cfg.Register(set)
	lifecycle.Main(set, &cfg.LogLevel, os.Args[1:], func() lifecycle.Service {
		return func(ctx context.Context, log *slog.Logger) error { return projector.NewApp(cfg, log).Run(ctx) }
	})
}
