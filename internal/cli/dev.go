package cli

import (
	"context"
	"io"
	"os"

	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/dev"
	"github.com/eventline/eventline/internal/observe"
)

func devCmd(ctx context.Context, args []string, stdout io.Writer) error {
	var o dev.Options
	var logLevel string
	var demoRate int
	set := config.New("eventline dev")
	set.String(&o.Dir, "dir", "EVENTLINE_DIR", ".eventline", "state directory: NATS store, private Postgres, the dev key")
	set.String(&o.HTTPAddr, "http-addr", "HTTP_ADDR", "127.0.0.1:8080", "the one public address every API is served on")
	set.String(&o.NATSAddr, "nats-addr", "EVENTLINE_DEV_NATS_ADDR", "127.0.0.1:4223", "client address of the embedded NATS server (port 0: any free port)")
	set.String(&o.DatabaseURL, "database-url", "DATABASE_URL", "", "Postgres URL; empty tries localhost:5432, then a private cluster under <dir>/pg")
	set.String(&logLevel, "log-level", "LOG_LEVEL", "warn", "debug, info, warn or error (JSON logs on stderr)")
	set.Bool(&o.Demo, "demo", "EVENTLINE_DEMO", false, "generate a Fizzy-like stream of boards, cards, assignments, moves, comments with mentions and closes")
	set.Int(&demoRate, "demo-rate", "EVENTLINE_DEMO_RATE", 5, "events per second the demo posts after its initial backlog")
	if err := parse(set, args); err != nil {
		return err
	}
	o.DemoRate = float64(demoRate)
	o.Stdout = stdout
	log, err := observe.NewLogger(os.Stderr, logLevel)
	if err != nil {
		return usageError{err.Error()}
	}
	o.Log = log
	return dev.Run(ctx, o)
}
