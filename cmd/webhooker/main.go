// Command webhooker fans events out to webhook endpoints as signed,
// retried deliveries and serves the webhook API.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/lifecycle"
	"github.com/eventline/eventline/internal/webhooker"
)

func main() {
	var cfg webhooker.AppConfig
	set := config.New("webhooker")
	cfg.Register(set)
	lifecycle.Main(set, &cfg.LogLevel, os.Args[1:], func() lifecycle.Service {
		return func(ctx context.Context, log *slog.Logger) error { return webhooker.NewApp(cfg, log).Run(ctx) }
	})
}
