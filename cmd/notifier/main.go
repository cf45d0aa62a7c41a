// Command notifier turns the EVENTS stream into user notifications: an
// aggregated inbox with an API and Server-Sent Events, watches, and email
// digests over SMTP.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/lifecycle"
	"github.com/eventline/eventline/internal/notifier"
)

func main() {
	var cfg notifier.AppConfig
	set := config.New("notifier")
	cfg.Register(set)
	lifecycle.Main(set, &cfg.LogLevel, os.Args[1:], func() lifecycle.Service {
		return func(ctx context.Context, log *slog.Logger) error { return notifier.NewApp(cfg, log).Run(ctx) }
	})
}
