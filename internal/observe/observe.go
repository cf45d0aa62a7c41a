// Package observe gives every eventline binary the same operational
// surface: a JSON slog logger with a configurable level, and an admin HTTP
// server with /livez, /readyz and /metrics (docs/architecture.md §12).
package observe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/eventline/eventline/internal/httpapi"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewLogger returns a JSON logger writing to w at level ("debug", "info",
// "warn", "error").
func NewLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("LOG_LEVEL %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors. Each service registers its own metrics on it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Check is one readiness condition; nil means ready.
type Check func(ctx context.Context) error

// Admin serves /livez, /readyz and /metrics.
type Admin struct {
	srv      *http.Server
	mux      *httpapi.Mux
	checks   map[string]Check
	draining atomic.Bool
}

// NewAdmin returns an admin server for addr. /readyz runs every check with
// a short timeout and answers 503 naming the failing ones, or while the
// service drains.
func NewAdmin(addr string, reg *prometheus.Registry, checks map[string]Check) *Admin {
	mux := httpapi.NewMux()
	a := &Admin{checks: checks, mux: mux}
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	a.srv = &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return a
}

// Routes are the patterns the admin address serves.
func (a *Admin) Routes() []string { return a.mux.Patterns() }

// SetDraining makes /readyz answer 503 so load balancers stop sending
// traffic during shutdown.
func (a *Admin) SetDraining() { a.draining.Store(true) }

func (a *Admin) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := map[string]string{}
	ready := !a.draining.Load()
	if !ready {
		status["shutdown"] = "draining"
	}
	for name, check := range a.checks {
		if err := check(ctx); err != nil {
			status[name] = err.Error()
			ready = false
		} else {
			status[name] = "ok"
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ready": ready, "checks": status})
}

// Listen binds the admin address, so a port conflict fails start-up.
func (a *Admin) Listen(ctx context.Context) (net.Listener, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", a.srv.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on admin address %s: %w", a.srv.Addr, err)
	}
	return l, nil
}

// Serve serves on l until Shutdown.
func (a *Admin) Serve(l net.Listener) error {
	if err := a.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin server: %w", err)
	}
	return nil
}

// Shutdown stops the admin server.
func (a *Admin) Shutdown(ctx context.Context) error { return a.srv.Shutdown(ctx) }

// Checks returns the readiness checks every service has: its NATS
// connection is connected and Postgres answers.
func Checks(nc *nats.Conn, pool *pgxpool.Pool) map[string]Check {
	return map[string]Check{
		"nats": func(context.Context) error {
			if s := nc.Status(); s != nats.CONNECTED {
				return fmt.Errorf("NATS connection is %s", s)
			}
			return nil
		},
		"postgres": func(ctx context.Context) error { return pool.Ping(ctx) },
	}
}
