// Package notifier turns events into user notifications: per-tenant rules
// decide who is notified and who starts watching, an aggregated inbox
// keeps one notification per user and group, Server-Sent Events stream
// inbox changes, and email digests go out over SMTP once per window.
//
// It consumes the EVENTS stream through the durable "notifier", pinned to
// one replica at a time (the others are hot standbys), and applies it in
// stream order: batches of events in transactions that commit in stream
// order and move a checkpoint, unrelated batches running side by side
// (pipeline.go). Each message is acked only after the transaction holding
// its effects commits. Inbox changes take a per-user sequence, which
// orders SSE ids and digest windows.
package notifier

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/internal/browser"
	"github.com/eventline/eventline/internal/consumerlag"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/internal/lifecycle"
	"github.com/eventline/eventline/internal/observe"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/render"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/pkg/events"
)

// Config tunes the notifier. Zero values take defaults.
type Config struct {
	Consumer   string // durable name; default "notifier"
	MaxDeliver int    // deliveries of one message by JetStream: the durable's, as provisioned (NewService reads it); a message it gives up on is read from the stream
	Batch      int    // most events per inbox transaction; default 500
	// Inflight is how many batch transactions may run at once (unrelated
	// batches; they still commit in stream order); default 2.
	Inflight int
	// Linger is how long a batch that is not full waits, from the arrival
	// of its oldest message, for more messages before it starts when no
	// batch runs; default 5ms, negative for none. At low rates every event
	// would otherwise be a transaction of its own (BENCHMARKS.md
	// "Efficiency: CPU per event, by process").
	Linger time.Duration
	// PinnedTTL is how long the durable stays pinned to a replica that
	// stopped asking for messages before a standby gets them; default 10s.
	PinnedTTL time.Duration
	// GapWait is how long a message missing from the deliveries (held by a
	// replica that stopped) is waited for before it is read from the stream;
	// default 1s.
	GapWait time.Duration
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
	// UserTokenSecret (USER_TOKEN_SECRET) signs the user tokens browsers
	// open the inbox with (docs/browser.md); empty: API keys only.
	UserTokenSecret string
	// Now replaces the clock (tests).
	Now func() time.Time
}

// DefaultLinger is Config.Linger's default: a few ms of notification
// latency for fewer, fuller inbox transactions at low rates.
const DefaultLinger = 5 * time.Millisecond

func (c Config) withDefaults() Config {
	if c.Consumer == "" {
		c.Consumer = DefaultConsumer
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 50
	}
	if c.Inflight <= 0 {
		c.Inflight = 2
	}
	if c.PinnedTTL <= 0 {
		c.PinnedTTL = DefaultPinnedTTL
	}
	if c.GapWait <= 0 {
		c.GapWait = time.Second
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
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
	cons    jetstream.Consumer
	str     jetstream.Stream
	store   *Store
	hub     *Hub
	api     *API
	digests *digestSender
	log     *slog.Logger
	metrics *Metrics
	lag     *consumerlag.Monitor // nil without metrics
	// hook, when set, runs inside each batch's transaction before its
	// commit (tests).
	hook func(stage string, s *slot) error
}

// NewService finds the durable (`eventline migrate` provisions it, with
// ConsumerConfig) and wires the parts; MaxDeliver and PinnedTTL are the
// durable's. nc is a connection of its own for the stream's deliveries; js
// serves the rest (stream and consumer info, reading missing messages, the
// pin).
func NewService(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, pool *pgxpool.Pool, auth httpapi.Authenticator, cfg Config, m *Metrics, log *slog.Logger) (*Service, error) {
	cfg = cfg.withDefaults()
	cons, err := stream.LookupDurable(ctx, js, cfg.Consumer)
	if err != nil {
		return nil, err
	}
	dc := cons.CachedInfo().Config
	if dc.PriorityPolicy != jetstream.PriorityPolicyPinned {
		return nil, fmt.Errorf("durable %s is not pinned to one replica (it was provisioned by an older eventline): run `eventline migrate` to update it", cfg.Consumer)
	}
	cfg.MaxDeliver, cfg.PinnedTTL = dc.MaxDeliver, dc.PinnedTTL
	str, err := stream.Lookup(ctx, js)
	if err != nil {
		return nil, err
	}
	var lag *consumerlag.Monitor
	if m != nil {
		lag = consumerlag.NewMonitor(cons, str, m.consumer, consumerlag.Config{Consumer: cfg.Consumer, Every: cfg.LagEvery})
	}
	store := NewStore(pool, cfg.Now)
	hub := NewHub(pool, m, log)
	guard, browserAPI, err := browser.Setup(pool, auth, cfg.UserTokenSecret, log)
	if err != nil {
		return nil, err
	}
	sentences := render.NewStore(pool)
	api := NewAPI(store, hub, auth, cfg.Digest.Secret, cfg.Heartbeat, log)
	api.guard, api.browser, api.sentences, api.digest = guard, browserAPI, sentences, cfg.Digest
	return &Service{
		lag: lag,
		cfg: cfg, pool: pool, nc: nc, cons: cons, str: str, store: store, hub: hub, log: log, metrics: m,
		api:     api,
		digests: &digestSender{pool: pool, mailer: cfg.Mailer, cfg: cfg.Digest, now: cfg.Now, log: log, metrics: m, sentences: sentences},
	}, nil
}

// Routes registers the notification API.
func (s *Service) Routes(mux httpapi.Router) { s.api.Routes(mux) }

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
// until ctx ends, then stops taking events, lets running batches commit
// and hands the rest back.
func (s *Service) Run(parent context.Context) error {
	cons, err := s.consumerOn(parent)
	if err != nil {
		if parent.Err() != nil {
			return nil // stopped during start-up: not a failure
		}
		return err
	}
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
	runErr := cons.Run(ctx)
	cancel() // the consumer may stop on its own: stop the rest too
	s.hub.Close()
	wg.Wait()
	return runErr
}

// consumerOn returns the ordered consumer, reading the durable on the
// service's consumer connection.
func (s *Service) consumerOn(ctx context.Context) (*orderedConsumer, error) {
	js, err := jetstream.New(s.nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	cons, err := js.Consumer(ctx, events.StreamName, s.cfg.Consumer)
	if err != nil {
		return nil, fmt.Errorf("open consumer %s: %w", s.cfg.Consumer, err)
	}
	return &orderedConsumer{name: s.cfg.Consumer, cons: cons, str: s.str, pool: s.pool, w: &writer{pool: s.pool, now: s.cfg.Now},
		cfg: s.cfg, log: s.log, metrics: s.metrics, tracer: s.tracer(), hook: s.hook}, nil
}

func (s *Service) tracer() trace.Tracer {
	if s.cfg.TracerProvider == nil {
		return nil
	}
	return observe.Tracer(s.cfg.TracerProvider, "notifier")
}

// retain prunes old de-duplication keys every ten minutes, the first
// time ten minutes after the start (a replica that restarts often does
// not prune each time; a test that prunes itself is not raced).
func (s *Service) retain(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(10 * time.Minute):
	}
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
