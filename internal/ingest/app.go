// Package ingest is the HTTP front door of eventline: it authenticates
// producers, validates their events all or nothing, and appends them to the
// EVENTS stream with group commit, answering 202 only once the append is
// durable (docs/contract.md §2 "Ingest", docs/architecture.md §2-3).
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/api"
	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/internal/lifecycle"
	"github.com/eventline/eventline/internal/observe"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/pkg/events"
)

// Config is everything the ingest binary reads from flags and environment.
type Config struct {
	HTTPAddr    string        // public API; default :8080
	AdminAddr   string        // /livez, /readyz, /metrics; default :9090
	NATS        stream.Client // as identity ingest (deploy/nats)
	DatabaseURL string        // API keys; default postgres://localhost:5432/eventline
	LogLevel    string        // debug, info, warn, error; default info
	RateLimit   int           // events/s per key without its own limit; default 10000, 0 = unlimited
	// IdempotencyRetention is how long appended ids are kept in
	// ingest.event_ids so that re-sending one answers duplicate with its
	// original seq; default 24h, 0 turns the table off (only the stream's
	// duplicate window applies).
	IdempotencyRetention time.Duration
	// IDs is the pool of ingest.event_ids (App.Run sets it); nil: no table.
	IDs *pgxpool.Pool
	// Callout serves the NATS auth callout when its issuer seed is set.
	Callout         CalloutConfig
	Batch           CommitterConfig
	ShutdownTimeout time.Duration // default 30s
	// TracerProvider makes the request spans; the binary sets it when
	// OTEL_* configures an exporter (observe.StartTracing). Nil: no spans,
	// and an incoming traceparent is passed on to the events unchanged.
	TracerProvider trace.TracerProvider
	// Now is the clock of recorded_at and of the rate limits; nil:
	// time.Now. Tests set it to check limits without waiting for them.
	Now func() time.Time
}

// Register binds the settings to flags and environment variables.
func (c *Config) Register(s *config.Set) {
	s.String(&c.HTTPAddr, "http-addr", "HTTP_ADDR", ":8080", "public API listen address")
	s.String(&c.AdminAddr, "admin-addr", "ADMIN_ADDR", ":9090", "admin listen address (/livez, /readyz, /metrics)")
	c.NATS.Register(s)
	c.Callout.Register(s)
	s.String(&c.DatabaseURL, "database-url", "DATABASE_URL", postgres.DefaultURL, "Postgres URL (API keys)")
	s.String(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	s.Int(&c.RateLimit, "rate-limit", "INGEST_RATE_LIMIT", 10000, "events per second per API key without its own limit; 0 for unlimited")
	s.Duration(&c.IdempotencyRetention, "idempotency-retention", "INGEST_IDEMPOTENCY_RETENTION", 24*time.Hour, "how long a re-sent id answers duplicate with its original seq (ingest.event_ids); 0 for only the stream's duplicate window")
	s.Int(&c.Batch.MaxBatch, "batch-max", "INGEST_BATCH_MAX", events.MaxBatch, "most events per atomic batch (<= 1000)")
	s.Duration(&c.Batch.Linger, "batch-linger", "INGEST_BATCH_LINGER", 5*time.Millisecond, "how long a batch waits for more requests while another commits")
	s.Int(&c.Batch.MaxInflight, "batch-inflight", "INGEST_BATCH_INFLIGHT", 4, "batches committing at once")
	s.Int(&c.Batch.PartialInflight, "batch-partial-inflight", "INGEST_BATCH_PARTIAL_INFLIGHT", DefaultPartialInflight, "batches committing at once when one that is not full is sent (more only for full batches)")
	s.Int(&c.Batch.PipelineMax, "batch-pipeline-max", "INGEST_BATCH_PIPELINE_MAX", DefaultPipelineMax, "largest group of single-event requests appended as pipelined plain publishes instead of one atomic batch; negative: never")
	s.Duration(&c.Batch.Timeout, "append-timeout", "INGEST_APPEND_TIMEOUT", 10*time.Second, "bound on one batch append before answering 503")
	s.Duration(&c.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", 30*time.Second, "how long SIGTERM waits for in-flight requests")
}

// Service is the ingest API without its listeners: the handler and the
// group committer. `eventline dev` mounts it next to the other services.
type Service struct {
	committer *Committer
	handler   http.Handler
	ids       *idTable // nil without an id table
	finished  chan struct{}
}

// NewService wires the ingest API over a publisher and a key store.
func NewService(pub Appender, keys httpapi.Authenticator, cfg Config, reg prometheus.Registerer, log *slog.Logger) *Service {
	m := newMetrics(reg)
	bc := cfg.Batch
	bc.Observe = m.batch
	var ids *idTable
	if cfg.IDs != nil && cfg.IdempotencyRetention > 0 {
		ids = newIDTable(cfg.IDs, cfg.IdempotencyRetention, reg, log)
		pub = ids.wrap(pub)
	}
	c := NewCommitter(pub, bc)
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	h := &handler{committer: c, limiter: newLimiter(cfg.RateLimit), metrics: m, log: log, now: now}
	if cfg.TracerProvider != nil {
		h.tracer = observe.Tracer(cfg.TracerProvider, "ingest")
	}
	return &Service{committer: c, handler: httpapi.RequireScope(keys, apikey.ScopeIngest, h), ids: ids, finished: make(chan struct{})}
}

// Routes registers POST /v1/events on mux.
func (s *Service) Routes(mux httpapi.Router) {
	mux.Handle("POST /v1/events", s.handler)
}

// Run commits batches until Close has been called and every accepted
// request is answered, then records the last appended ids. ctx carries
// values only: Close, not ctx's end, stops it (requests accepted before
// Close are still answered).
func (s *Service) Run(ctx context.Context) {
	defer close(s.finished)
	if s.ids == nil {
		s.committer.Run()
		return
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go s.ids.run(ctx)
	s.committer.Run()
	cancel()
	<-s.ids.done
}

// Done is closed when Run has returned.
func (s *Service) Done() <-chan struct{} { return s.finished }

// Close stops accepting appends; Run returns once the last batch is done.
func (s *Service) Close() { s.committer.Close() }

// App is the ingest binary: connections, listeners, service and shutdown.
type App struct {
	*lifecycle.Listening
	cfg Config
	log *slog.Logger
}

// New returns an App; Run starts it.
func New(cfg Config, log *slog.Logger) *App {
	return &App{Listening: lifecycle.NewListening(), cfg: cfg, log: log}
}

// Run starts the service and blocks until ctx is cancelled (SIGTERM), then
// drains: stop accepting, answer every in-flight request after its batch
// is durable, close connections. It returns nil after a clean drain.
func (a *App) Run(ctx context.Context) error {
	cfg := a.cfg
	tracing, err := observe.StartTracing(ctx, "ingest")
	if err != nil {
		return err
	}
	defer lifecycle.FlushTraces(tracing, a.log)
	if tracing.Exporting {
		cfg.TracerProvider = tracing.Provider
	}
	conns, err := lifecycle.Connect(ctx, cfg.DatabaseURL, cfg.NATS, "ingest", a.log)
	if err != nil {
		return err
	}
	defer conns.Close()
	pool, nc := conns.Pool, conns.NC
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := checkStream(ctx, js); err != nil {
		return err
	}
	pub, err := events.NewPublisher(nc, events.WithTimeout(cfg.Batch.Timeout))
	if err != nil {
		return err
	}
	reg := observe.NewRegistry()
	cfg.IDs = pool
	keys := apikey.NewStore(pool, 0)
	if cfg.Callout.IssuerSeed != "" {
		stop, err := startCallout(ctx, cfg.Callout, cfg.NATS, keys, a.log)
		if err != nil {
			return err
		}
		defer stop()
	}
	svc := NewService(pub, keys, cfg, reg, a.log)
	mux := httpapi.NewMux()
	svc.Routes(mux)
	mux.Handle("GET /openapi.json", api.Handler(api.Ingest))
	checks := observe.Checks(nc, pool)
	checks["stream"] = stream.NewPresence(js, "", 0).Check
	err = lifecycle.Serve(ctx, lifecycle.Server{
		Name: "ingest", HTTPAddr: cfg.HTTPAddr, Handler: mux, Log: a.log, Listening: a.Listening,
		Admin: observe.NewAdmin(cfg.AdminAddr, reg, checks), ShutdownTimeout: cfg.ShutdownTimeout,
	}, func(ctx context.Context) error {
		// The HTTP server has drained when ctx ends: commit what is left.
		go svc.Run(ctx)
		<-ctx.Done()
		svc.Close()
		<-svc.Done()
		return nil
	})
	if derr := drain(nc); derr != nil {
		err = errors.Join(err, derr)
	}
	return err
}

// checkStream refuses to start without the stream, or with one that does
// not take atomic batches: ingest may not create or change it.
func checkStream(ctx context.Context, js jetstream.JetStream) error {
	s, err := stream.Lookup(ctx, js)
	if err != nil {
		return err
	}
	if !s.CachedInfo().Config.AllowAtomicPublish {
		return fmt.Errorf("stream %s does not allow atomic publish: %s", events.StreamName, stream.ProvisionHint)
	}
	return nil
}

// drain flushes and closes the NATS connection, waiting until it is closed.
func drain(nc *nats.Conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if nc.IsClosed() {
		return nil
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		// Not connected: nothing is buffered that anyone waits for.
		nc.Close()
		return nil
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		return errors.New("timed out draining the NATS connection")
	}
}
