// Command ingest is eventline's HTTP front door: POST /v1/events appends
// validated events to the EVENTS stream with group commit.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/ingest"
	"github.com/eventline/eventline/internal/lifecycle"
)

func main() {
	var cfg ingest.Config
	set := config.New("ingest")
	cfg.Register(set)
	lifecycle.Main(set, &cfg.LogLevel, os.Args[1:], func() lifecycle.Service {
		return func(ctx context.Context, log *slog.Logger) error { return ingest.New(cfg, log).Run(ctx) }
	})
}
