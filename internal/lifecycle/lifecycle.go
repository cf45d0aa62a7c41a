// Package lifecycle runs an eventline binary: parse flags and environment,
// build the JSON logger, run until SIGTERM or SIGINT, and exit 0 after a
// clean drain, 1 on failure, 2 on bad configuration.
package lifecycle

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/observe"
)

// Service is what a long-running binary does once configured.
type Service func(ctx context.Context, log *slog.Logger) error

// Main parses args into the settings registered on set, then runs the
// service built by build with a context cancelled on SIGTERM/SIGINT.
// logLevel must be registered on set.
func Main(set *config.Set, logLevel *string, args []string, build func() Service) {
	if err := set.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log, err := observe.NewLogger(os.Stderr, *logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := build()(ctx, log); err != nil {
		log.Error("exiting on error", "error", err.Error())
		stop()
		os.Exit(1)
	}
}

// FlushTraces exports the spans a service still buffers, after it drained.
func FlushTraces(t *observe.Tracing, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		log.Warn("could not export the last spans", "error", err.Error())
	}
}
