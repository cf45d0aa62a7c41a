// Package notifier turns events into user notifications: per-tenant rules
// decide who is notified and who starts watching, an aggregated inbox
// keeps one notification per user and group, Server-Sent Events stream
// inbox changes, and email digests go out over SMTP once per window.
//
// It consumes the EVENTS stream through the durable "notifier" with a
// Watermill router whose handlers group-commit their inbox writes: each
// message is acked only after the transaction holding its effects and its
// de-duplication key commits.
package notifier

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/internal/consume"
	"github.com/eventline/eventline/internal/consumerlag"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/internal/lifecycle"
	"github.com/eventline/eventline/internal/observe"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/stream"
)

// DefaultHandlers is how many Watermill handlers a replica runs by default.
const DefaultHandlers = 128

// Config tunes the notifier. Zero values take defaults.
type Config struct {
	Consumer   string // durable name; default "notifier"
	MaxDeliver int    // deliveries of one event before it is dead-lettered: the durable's, as provisioned (NewService reads it)
	Handlers   int    // concurrent Watermill handlers; default 128
	Batch      int    // most events per inbox transaction; default 500
	// Mailer sends digests; nil disables digest sending (windows are still
	// recorded and go out once a mailer is configured).
	Mailer      Mailer
	Digest      DigestConfig
	DigestEvery time.Duration // how often due digests are looked for; default 30s
	Heartbeat   time.Duration // SSE heartbeat; default 15s
	LagEvery    time.Duration // how often the durable's lag is measured for /metrics; default 5s
	// DedupRetention is how long the de-duplication key of an applied
	// event is kept (notify.processed); default 30 days. A redelivery comes
	// within minutes; past the retention only a durable created anew from
	// the start of the stream would apply an event again.
	DedupRetention time.Duration
	// TracerProvider makes a span per event, child of the event's
	// traceparent; the binary sets it from OTEL_* (observe.StartTracing).
	// Nil: no spans.
	TracerProvider trace.TracerProvider
	// Now replaces the clock (tests).
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Consumer == "" {
		c.Consumer = DefaultConsumer
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 50
	}
	if c.Handlers <= 0 {
		c.Handlers = DefaultHandlers
	}
	if c.Batch <= 0 {
		c.Batch = 500
	}
	if c.DigestEvery <= 0 {
		c.DigestEvery = 30 * time.Second
	}
	if c.Digest.Claim <= 0 {
		c.Digest.Claim = 2 * time.Minute
	}
	if c.Digest.Batch <= 0 {
		c.Digest.Batch = 50
	}
	if c.Digest.MaxTries <= 0 {
		c.Digest.MaxTries = 12
	}
	if c.DedupRetention <= 0 {
		c.DedupRetention = 30 * 24 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Service is the notifier without listeners: the consumer, the digest
// scheduler, the SSE hub and the API.
type Service struct {
	cfg     Config
	pool    *pgxpool.Pool
	nc      *nats.Conn
	store   *Store
	hub     *Hub
	api     *API
	digests *digestSender
	log     *slog.Logger
	metrics *Metrics
	lag     *consumerlag.Monitor // nil without metrics
}

// NewService finds the durable (`eventline migrate` provisions it) and
// wires the parts. nc is a connection of its own: the Watermill subscriber
// drains it on close.
func NewService(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, pool *pgxpool.Pool, auth httpapi.Authenticator, cfg Config, m *Metrics, log *slog.Logger) (*Service, error) {
	cfg = cfg.withDefaults()
	cons, err := stream.LookupDurable(ctx, js, cfg.Consumer)
	if err != nil {
		return nil, err
	}
	cfg.MaxDeliver = cons.CachedInfo().Config.MaxDeliver
	cfg.Handlers = consume.Handlers(ctx, log, cons, cfg.Handlers)
	var lag *consumerlag.Monitor
	if m != nil {
		str, err := stream.Lookup(ctx, js)
		if err != nil {
			return nil, err
		}
		lag = consumerlag.NewMonitor(cons, str, m.consumer, consumerlag.Config{Consumer: cfg.Consumer, Every: cfg.LagEvery})
	}
	store := NewStore(pool, cfg.Now)
	hub := NewHub(pool, m, log)
	return &Service{
		lag: lag,
		cfg: cfg, pool: pool, nc: nc, store: store, hub: hub, log: log, metrics: m,
		api:     NewAPI(store, hub, auth, cfg.Digest.Secret, cfg.Heartbeat, log),
		digests: &digestSender{pool: pool, mailer: cfg.Mailer, cfg: cfg.Digest, now: cfg.Now, log: log, metrics: m},
	}, nil
}

// Routes registers the notification API.
func (s *Service) Routes(mux *http.ServeMux) { s.api.Routes(mux) }

// Hub is the SSE fan-out (its Close ends every stream).
func (s *Service) Hub() *Hub { return s.hub }

// Store is the notifier's store.
func (s *Service) Store() *Store { return s.store }

// SendDueDigests runs one digest pass now and returns how many digests it
// handled (tests with a fake clock; the scheduler calls it periodically).
func (s *Service) SendDueDigests(ctx context.Context) (int, error) {
	if s.cfg.Mailer == nil {
		return 0, fmt.Errorf("no mailer configured (SMTP_URL)")
	}
	total := 0
	for {
		n, err := s.digests.tick(ctx)
		total += n
		if err != nil || n < s.cfg.Digest.Batch {
			return total, err
		}
	}
}

// Run consumes events, runs the digest scheduler and the SSE listener
// until ctx ends, then stops taking events and lets commits finish.
func (s *Service) Run(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.hub.Run(ctx) }()
	if s.lag != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.lag.Run(ctx) }()
	}
	if s.cfg.Mailer != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.schedule(ctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.retain(ctx) }()
	commits := newCommits(&writer{pool: s.pool, now: s.cfg.Now}, s.metrics, s.cfg.Batch)
	go commits.Run()
	defer func() { commits.Close(); <-commits.Done() }()
	h := &handler{pool: s.pool, commits: commits, consumer: s.cfg.Consumer, maxDeliver: s.cfg.MaxDeliver, log: s.log, metrics: s.metrics,
		tracer: observe.Tracer(s.cfg.TracerProvider, "notifier")}
	router, sub, err := newRouter(s.nc, h, s.cfg.Handlers, s.log)
	if err != nil {
		return err
	}
	runErr := consume.RunRouter(ctx, router, sub, s.nc)
	if parent.Err() != nil {
		runErr = nil // stopped during start-up: not a failure
	}
	cancel() // the router may stop on its own: stop the rest too
	s.hub.Close()
	wg.Wait()
	return runErr
}

// retain prunes old de-duplication keys every ten minutes.
func (s *Service) retain(ctx context.Context) {
	lifecycle.Every(ctx, 10*time.Minute, func(ctx context.Context) {
		if _, err := s.PruneProcessed(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "prune de-duplication keys", "error", err)
		}
	})
}

// PruneProcessed deletes the de-duplication keys older than
// DedupRetention, in batches, and returns how many went.
func (s *Service) PruneProcessed(ctx context.Context) (int64, error) {
	n, err := postgres.DeleteInBatches(ctx, s.pool, 5000, `DELETE FROM notify.processed WHERE ctid IN (
		SELECT ctid FROM notify.processed WHERE processed_at < $1 LIMIT 5000)`, s.cfg.Now().Add(-s.cfg.DedupRetention))
	if err != nil {
		return n, fmt.Errorf("prune notify.processed: %w", err)
	}
	return n, nil
}

// schedule sends due digests every DigestEvery.
func (s *Service) schedule(ctx context.Context) {
	lifecycle.Every(ctx, s.cfg.DigestEvery, func(ctx context.Context) {
		if _, err := s.SendDueDigests(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "digest pass failed", "error", err)
		}
	})
}
