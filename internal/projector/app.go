package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/api"
	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/browser"
	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/consumerlag"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/internal/lifecycle"
	"github.com/eventline/eventline/internal/observe"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/render"
	"github.com/eventline/eventline/internal/stream"
)

// AppConfig is everything the projector binary reads from flags and
// environment.
type AppConfig struct {
	HTTPAddr        string
	AdminAddr       string
	NATS            stream.Client // as identity projector (deploy/nats)
	DatabaseURL     string
	LogLevel        string
	Workers         int            // workers in this process sharing the durable; default 2
	Batch           int            // most messages per transaction; default 500
	Consumer        ConsumerConfig // Name: the durable, default "projector" (eventline migrate provisions it)
	MaxLag          time.Duration  // /readyz fails beyond this lag; default 60s, 0 disables
	LagEvery        time.Duration  // how often lag is measured; default 5s
	ShutdownTimeout time.Duration
	// UserTokenSecret (USER_TOKEN_SECRET) verifies the user tokens that
	// may read the timelines they list (docs/browser.md); empty: API keys only.
	UserTokenSecret string
	// TracerProvider, when set, records a span per projected event in the
	// event's trace; the binary sets it when OTEL_* configures an exporter.
	TracerProvider trace.TracerProvider
}

// Register binds the settings to flags and environment variables.
func (c *AppConfig) Register(s *config.Set) {
	s.String(&c.HTTPAddr, "http-addr", "HTTP_ADDR", ":8081", "timeline API listen address")
	s.String(&c.AdminAddr, "admin-addr", "ADMIN_ADDR", ":9091", "admin listen address (/livez, /readyz, /metrics)")
	c.NATS.Register(s)
	s.String(&c.DatabaseURL, "database-url", "DATABASE_URL", postgres.DefaultURL, "Postgres URL")
	s.String(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	s.Int(&c.Workers, "workers", "PROJECTOR_WORKERS", 2, "projection workers in this process (all share the durable)")
	s.Int(&c.Batch, "batch", "PROJECTOR_BATCH", 500, "most messages written per transaction")
	s.String(&c.Consumer.Name, "consumer", "PROJECTOR_CONSUMER", DefaultConsumer, "durable consumer name (provisioned by eventline migrate)")
	s.Duration(&c.MaxLag, "max-lag", "PROJECTOR_MAX_LAG", time.Minute, "/readyz fails when the projection is further behind; 0 disables")
	s.Duration(&c.LagEvery, "lag-interval", "PROJECTOR_LAG_INTERVAL", 5*time.Second, "how often lag is measured")
	s.String(&c.UserTokenSecret, "user-token-secret", "USER_TOKEN_SECRET", "", "key that verifies the user tokens browsers read timelines with (the notifier's); empty: API keys only")
	s.Duration(&c.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", 30*time.Second, "how long SIGTERM waits")
}

// Service is the projector without its listeners: workers, lag monitor and
// the timeline API. `eventline dev` mounts it next to the other services.
type Service struct {
	workers []*Projector
	lag     *consumerlag.Monitor
	api     *API
}

// NewService finds the durable (`eventline migrate` provisions it) and
// wires workers and API.
func NewService(ctx context.Context, js jetstream.JetStream, pool *pgxpool.Pool, cfg AppConfig, m *Metrics, log *slog.Logger) (*Service, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.LagEvery <= 0 {
		cfg.LagEvery = 5 * time.Second
	}
	cons, err := stream.LookupDurable(ctx, js, cfg.Consumer.withDefaults().Name)
	if err != nil {
		return nil, err
	}
	str, err := stream.Lookup(ctx, js)
	if err != nil {
		return nil, err
	}
	keys := apikey.NewStore(pool, 0)
	guard, _, err := browser.Setup(pool, keys, cfg.UserTokenSecret, log)
	if err != nil {
		return nil, err
	}
	api := NewAPI(NewStore(pool), keys, log)
	api.guard, api.sentences = guard, render.NewStore(pool)
	s := &Service{
		lag: consumerlag.NewMonitor(cons, str, m.consumer, consumerlag.Config{Consumer: cfg.Consumer.withDefaults().Name,
			Every: cfg.LagEvery, MaxLag: cfg.MaxLag, OnMeasure: func(l consumerlag.Lag) { m.lagSeconds.Set(l.Behind.Seconds()) }}),
		api: api,
	}
	for range cfg.Workers {
		wc := Config{Consumer: cfg.Consumer.withDefaults().Name, BatchSize: cfg.Batch}
		if cfg.TracerProvider != nil {
			wc.Tracer = observe.Tracer(cfg.TracerProvider, "projector")
		}
		s.workers = append(s.workers, New(cons, pool, wc, m, log))
	}
	return s, nil
}

// Routes registers the timeline API.
func (s *Service) Routes(mux httpapi.Router) { s.api.Routes(mux) }

// Ready is the lag readiness check.
func (s *Service) Ready(ctx context.Context) error { return s.lag.Ready(ctx) }

// Run runs the workers and the lag monitor until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, len(s.workers))
	wg.Add(1)
	go func() { defer wg.Done(); s.lag.Run(ctx) }()
	for _, w := range s.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(ctx); err != nil {
				w.log.ErrorContext(ctx, "projector worker stopped", "error", err)
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	return errors.Join(collect(errc)...)
}

func collect(c chan error) []error {
	var out []error
	for err := range c {
		out = append(out, err)
	}
	return out
}

// App is the projector binary.
type App struct {
	*lifecycle.Listening
	cfg AppConfig
	log *slog.Logger
}

// NewApp returns an App; Run starts it.
func NewApp(cfg AppConfig, log *slog.Logger) *App {
	return &App{Listening: lifecycle.NewListening(), cfg: cfg, log: log}
}

// Run starts everything and blocks until ctx ends, then stops the workers
// (unfinished batches are redelivered), the API and the connections.
func (a *App) Run(ctx context.Context) error {
	cfg := a.cfg
	tracing, err := observe.StartTracing(ctx, "projector")
	if err != nil {
		return err
	}
	defer lifecycle.FlushTraces(tracing, a.log)
	if tracing.Exporting {
		cfg.TracerProvider = tracing.Provider
	}
	conns, err := lifecycle.Connect(ctx, cfg.DatabaseURL, cfg.NATS, "projector", a.log)
	if err != nil {
		return err
	}
	defer conns.Close()
	pool, nc := conns.Pool, conns.NC
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	reg := observe.NewRegistry()
	svc, err := NewService(ctx, js, pool, cfg, NewMetrics(reg), a.log)
	if err != nil {
		return err
	}
	mux := httpapi.NewMux()
	svc.Routes(mux)
	mux.Handle("GET /openapi.json", api.Handler(api.Projector))
	checks := observe.Checks(nc, pool)
	checks["lag"] = svc.Ready
	checks["stream"] = stream.NewPresence(js, cfg.Consumer.withDefaults().Name, 0).Check
	return lifecycle.Serve(ctx, lifecycle.Server{
		Name: "projector", HTTPAddr: cfg.HTTPAddr, Handler: mux, Log: a.log, Listening: a.Listening,
		Admin: observe.NewAdmin(cfg.AdminAddr, reg, checks), ShutdownTimeout: cfg.ShutdownTimeout,
	}, svc.Run)
}
