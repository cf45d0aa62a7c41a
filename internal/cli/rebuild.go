package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/projector"
	"github.com/eventline/eventline/internal/stream"
)

func rebuild(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "timelines" {
		return usageError{"rebuild: say what to rebuild: timelines"}
	}
	var dbURL string
	var natsClient stream.Client
	var keepOld bool
	var dropDelay time.Duration
	set := flags("rebuild timelines", &dbURL)
	natsClient.Register(set)
	set.Bool(&keepOld, "keep-old", "EVENTLINE_KEEP_OLD", false, "keep the previous generation's tables for a rollback")
	set.Duration(&dropDelay, "drop-delay", "EVENTLINE_DROP_DELAY", 5*time.Second,
		"how long the previous generation's tables stay after the switch, for SQL that names timeline_g<N> directly (the views never need it)")
	if err := parse(set, args[1:]); err != nil {
		return err
	}
	pool, err := openMigrated(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// The rebuild creates and deletes durables of its own: the admin
	// identity.
	nc, err := stream.Connect(natsClient, natsauth.Admin, "eventline-rebuild", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	g, err := projector.Rebuild(ctx, js, pool, projector.RebuildConfig{KeepOld: keepOld, DropDelay: dropDelay, Progress: func(g int, pending uint64, switched bool) {
		phase := "filling"
		if switched {
			phase = "switched, catching up"
		}
		fmt.Fprintf(stdout, "generation %d: %s, %d messages to go\n", g, phase, pending)
	}}, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "timelines rebuilt: generation %d serves reads\n", g)
	return nil
}
