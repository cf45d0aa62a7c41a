package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/internal/console"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/observe"
	"github.com/eventline/eventline/internal/stream"
)

// consoleCmd serves the operator console until ctx ends.
func consoleCmd(ctx context.Context, args []string, stdout io.Writer) error {
	var dbURL, listen, tokenValue, tokenFile, services, logLevel string
	var natsClient stream.Client
	set := flags("console", &dbURL)
	natsClient.Register(set)
	set.String(&listen, "listen", "CONSOLE_ADDR", "127.0.0.1:8090", "address the console serves on (/console); put TLS in front of it")
	set.String(&tokenValue, "operator-token", "CONSOLE_TOKEN", "", "the operator credential (prefer the environment or --operator-token-file: flags show in ps)")
	set.String(&tokenFile, "operator-token-file", "CONSOLE_TOKEN_FILE", "", "file holding the operator credential")
	set.String(&services, "services", "CONSOLE_SERVICES", "", "readiness URLs to show: name=http://host:port/readyz,... (each service's ADMIN_ADDR)")
	set.String(&logLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	if err := parse(set, args); err != nil {
		return err
	}
	token, err := console.OperatorToken(tokenValue, tokenFile)
	if err != nil {
		return usageError{"console: " + err.Error()}
	}
	svcs, err := console.ReadyURLs(services)
	if err != nil {
		return usageError{"console: --services: " + err.Error()}
	}
	log, err := observe.NewLogger(os.Stderr, logLevel)
	if err != nil {
		return usageError{err.Error()}
	}
	pool, err := openMigrated(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	// Consumer info of every durable and reading messages by sequence: the
	// admin identity, as the other eventline commands.
	nc, err := stream.Connect(natsClient, natsauth.Admin, "eventline-console", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	c, err := console.New(console.Config{Pool: pool, JS: js, OperatorToken: token, Services: svcs, Log: log})
	if err != nil {
		return usageError{"console: " + err.Error()}
	}
	mux := http.NewServeMux()
	c.Routes(mux)
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.Handle("/", httpapi.Fallback(mux))
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("console: listen on %s: %w", listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "eventline console on http://%s/console\n", l.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
