package webhooker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/internal/consume"
	"github.com/eventline/eventline/internal/consumerlag"
	"github.com/eventline/eventline/internal/lifecycle"
	"github.com/eventline/eventline/internal/observe"
	"github.com/eventline/eventline/internal/render"
	"github.com/eventline/eventline/internal/secretbox"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/webhooker/attempt"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
	"github.com/eventline/eventline/pkg/events"
)

// DefaultHandlers is how many fan-out handlers a replica runs by default.
const DefaultHandlers = 256

// DefaultClaim is how long a claim on a delivery lasts unless renewed: a
// replica renews what it holds every quarter of it (leases), so a
// SIGKILLed replica's deliveries are attempted by the others within
// seconds, while a live replica keeps them however long they wait.
const DefaultClaim = 8 * time.Second

// DefaultShareAbove is the fan-out size above which replicas share an
// event's deliveries (Config.ShareAbove).
const DefaultShareAbove = 1000

// DefaultChunk is the default of Config.Chunk.
const DefaultChunk = 500

// Config tunes the webhooker. Zero values take defaults.
type Config struct {
	Consumer   string // durable name; default "webhooker"
	MaxDeliver int    // deliveries of one event to the fan-out: the durable's, as provisioned (NewService reads it)
	Handlers   int    // concurrent fan-out handlers; default 256
	// ShareAbove: an event to more endpoints is cut into chunks of Chunk
	// endpoints, for every replica's scheduler to take, instead of
	// attempted by the replica that took it. Default 1,000.
	ShareAbove int
	// Chunk is the most endpoints of one chunk of a shared fan-out: a
	// replica takes a chunk while its dispatcher has room for all of it.
	// Default 500: two fit in the room of the default WEBHOOK_WORKERS.
	Chunk         int
	Dispatch      attempt.DispatchConfig
	FirstAttempt  FirstAttemptConfig
	Claim         time.Duration // how long a claim on a delivery lasts unless its replica renews it (every Claim/4); default 8s
	RenewEvery    time.Duration // how often a replica renews its claims; default Claim/4 (tests that drive the clock set it long)
	ScheduleEvery time.Duration // how often due retries are looked for; default 250ms
	LagEvery      time.Duration // how often the durable's lag and the backlog are measured for /metrics; default 5s
	RefreshEvery  time.Duration // endpoint cache refresh; default 250ms
	Disable       delivery.DisableRule
	Retention     time.Duration // delivery log retention; default 30 days
	UserAgent     string        // default "eventline/dev"
	// FailingAfter consecutive failed attempts of an endpoint are
	// announced as webhook.attempt_failing, once per failing streak
	// (docs/webhooks.md "Operational events"); default 3.
	FailingAfter int
	// Secrets seals endpoint secrets at rest (required; see AppConfig's
	// EVENTLINE_SECRET_KEY).
	Secrets *secretbox.Keyring
	// TracerProvider makes the fan-out and delivery-attempt spans; the
	// binary sets it from OTEL_* (observe.StartTracing). Nil: no spans,
	// and deliveries carry the event's traceparent unchanged.
	TracerProvider trace.TracerProvider
	// Now and Rand replace the clock and the jitter source (tests).
	Now  func() time.Time
	Rand func() float64
}

func (c Config) withDefaults() Config {
	if c.Consumer == "" {
		c.Consumer = DefaultConsumer
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 100
	}
	if c.Handlers <= 0 {
		c.Handlers = DefaultHandlers
	}
	if c.LagEvery <= 0 {
		c.LagEvery = 5 * time.Second
	}
	if c.ShareAbove <= 0 {
		c.ShareAbove = DefaultShareAbove
	}
	if c.Chunk <= 0 {
		c.Chunk = DefaultChunk
	}
	c.FirstAttempt = c.FirstAttempt.withDefaults()
	if c.Claim <= 0 {
		c.Claim = DefaultClaim
	}
	if c.ScheduleEvery <= 0 {
		c.ScheduleEvery = 250 * time.Millisecond
	}
	if c.Retention <= 0 {
		c.Retention = 30 * 24 * time.Hour
	}
	if c.FailingAfter <= 0 {
		c.FailingAfter = delivery.DefaultFailingAfter
	}
	if c.UserAgent == "" {
		c.UserAgent = "eventline/dev"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = defaultRand
	}
	return c
}

// defaultRand is the retry jitter's source unless Config.Rand replaces it.
func defaultRand() float64 { return rand.Float64() } //nolint:gosec // retry jitter needs no cryptographic randomness

// Service is the webhooker without listeners: the fan-out router, the
// dispatcher, the retry scheduler, the result writer and the registry.
type Service struct {
	cfg       Config
	pool      *pgxpool.Pool
	fanoutNC  *nats.Conn
	js        jetstream.JetStream
	str       jetstream.Stream
	registry  *endpoint.Registry
	store     *endpoint.Store
	ledger    *delivery.Ledger
	poster    attempt.Poster
	publisher *events.Publisher
	log       *slog.Logger
	metrics   *Metrics
	lag       *consumerlag.Monitor // nil without metrics
	gate      *firstGate
	// settled is closed once the passes Run starts with (the first prune
	// of the log, the first backlog measurement) have ended: tests that
	// count Postgres round trips wait for it.
	settled    chan struct{}
	settleOnce sync.Once

	// set by Run
	mu         sync.Mutex
	dispatcher *attempt.Dispatcher
	scheduler  *scheduler
	leases     *leases
	announcer  *announcer
}

// NewService finds the durable (`eventline migrate` provisions it) and
// wires the parts. fanoutNC is a connection of its own: the Watermill
// subscriber drains it on close.
func NewService(ctx context.Context, fanoutNC *nats.Conn, js jetstream.JetStream, pool *pgxpool.Pool, poster attempt.Poster, pub *events.Publisher, cfg Config, m *Metrics, log *slog.Logger) (*Service, error) {
	cfg = cfg.withDefaults()
	if cfg.Secrets == nil {
		return nil, errors.New("webhooker: no secret key to seal webhook secrets with (Config.Secrets)")
	}
	store := endpoint.NewStore(pool, cfg.Secrets)
	// Rows from before sealing existed, or sealed with a rotated-out key,
	// are sealed with the primary key before anything reads them.
	if n, err := store.SealSecrets(ctx); err != nil {
		return nil, err
	} else if n > 0 {
		log.InfoContext(ctx, "sealed webhook secrets with the primary key", "endpoints", n, "key_id", cfg.Secrets.PrimaryID())
	}
	cons, err := stream.LookupDurable(ctx, js, cfg.Consumer)
	if err != nil {
		return nil, err
	}
	cfg.MaxDeliver = cons.CachedInfo().Config.MaxDeliver
	cfg.Handlers = consume.Handlers(ctx, log, cons, cfg.Handlers)
	str, err := stream.Lookup(ctx, js)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, pool: pool, fanoutNC: fanoutNC, js: js, str: str, store: store, ledger: delivery.NewLedger(pool, cfg.Disable, cfg.FailingAfter), poster: poster, publisher: pub, log: log, metrics: m,
		registry: endpoint.NewRegistry(store, cfg.RefreshEvery, log), gate: &firstGate{cfg: cfg.FirstAttempt}, settled: make(chan struct{})}
	// After NATS reconnects, what the fan-out took before may come again
	// as first deliveries (a restarted server loses unflushed consumer
	// state): those record first.
	prev := fanoutNC.Opts.ReconnectedCB
	fanoutNC.SetReconnectHandler(func(c *nats.Conn) {
		s.gate.reconnected()
		if prev != nil {
			prev(c)
		}
	})
	if m != nil {
		s.lag = consumerlag.NewMonitor(cons, str, m.consumer, consumerlag.Config{Consumer: cfg.Consumer, Every: cfg.LagEvery})
	}
	return s, nil
}

// Store is the endpoint store the API uses.
func (s *Service) Store() *endpoint.Store { return s.store }

// Ledger is the delivery ledger the API uses (the delivery log, retries
// and resends).
func (s *Service) Ledger() *delivery.Ledger { return s.ledger }

// Run runs every part until ctx ends, then stops taking events, lets
// running attempts finish and writes their outcomes.
func (s *Service) Run(ctx context.Context) error {
	regCtx, stopRegistry := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRegistry()
	go s.registry.Run(regCtx)
	s.metrics.watchRegistry(s.registry)
	select {
	case <-s.registry.Loaded():
	case <-ctx.Done():
		return nil
	}

	var pub appender
	if s.publisher != nil {
		pub = s.publisher
	}
	// Closed last (deferred first): the result writer and the fan-out's
	// inserts queue operational events until they stop.
	ann := newAnnouncer(s.ledger, pub, s.log)
	go ann.run()
	defer ann.close()
	// Renewals have a connection of their own: they never wait for one
	// behind fan-out inserts and outcome writes (docs/architecture.md §16).
	renewals, err := pgxpool.NewWithConfig(ctx, leaseConfig(s.pool))
	if err != nil {
		return fmt.Errorf("open the claim renewals' connection: %w", err)
	}
	defer renewals.Close()
	held := newLeases(s.ledger.On(renewals), s.cfg.Claim, s.cfg.Now, s.log)
	rw := newResultWriter(s.ledger, held, s.log, s.recordDisabled)
	rw.notify = ann.notify
	rw.metrics = s.metrics
	go rw.run() //nolint:gosec // outcomes of running attempts must be written after ctx ends
	speed := newEndpointSpeed(s.cfg.FirstAttempt.Wait)
	sink := newFirstSink(func(o delivery.Outcome) { rw.in <- o })
	att := &attempt.Attempter{Endpoints: s.registry, Poster: s.poster, Sink: sink, Now: s.cfg.Now, Rand: s.cfg.Rand,
		UserAgent: s.cfg.UserAgent, Log: s.log, Sentences: render.NewStore(s.pool), Observer: attemptMeter{metrics: s.metrics, speed: speed},
		Tracer: observe.Tracer(s.cfg.TracerProvider, "webhooker")}
	// Attempts get their own context: on shutdown they finish (bounded by
	// the HTTP timeout) and their outcomes are written.
	attemptCtx, stopAttempts := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAttempts()
	// A delivery whose claim is about to end unrenewed is let go, not
	// attempted: another replica may take it once it ends (leases.usable).
	run := func(ctx context.Context, j delivery.Job) {
		if !held.usable(j.DeliveryID) {
			held.release(j.DeliveryID, j.Attempt)
			s.metrics.claimsEnded("lapsed", 1)
			return
		}
		att.Attempt(ctx, j)
	}
	d := attempt.NewDispatcher(attemptCtx, s.cfg.Dispatch, run, func(id string) int {
		e, _ := s.registry.Get(id)
		return e.RateLimit
	})
	d.Windows = pgRateWindows{s.pool}
	sch := &scheduler{ledger: s.ledger, str: s.str, queue: d, now: s.cfg.Now, claim: s.cfg.Claim, leases: held, batch: 500, hold: 2 * d.Workers(),
		log: s.log, metrics: s.metrics, poke: make(chan struct{}, 1)}
	s.metrics.watchDispatcher(d)
	s.mu.Lock()
	s.dispatcher, s.scheduler, s.leases, s.announcer = d, sch, held, ann
	s.mu.Unlock()

	inserts := newInserts(s.ledger, rw.announce, held, s.cfg.Now, s.cfg.Claim)
	go inserts.Run()
	defer func() { inserts.Close(); <-inserts.Done() }()
	f := &fanout{pool: s.pool, inserts: inserts, ledger: s.ledger, registry: s.registry, submit: d.Submit, leases: held, scheduler: sch,
		shareAbove: s.cfg.ShareAbove, chunkSize: s.cfg.Chunk, now: s.cfg.Now, claim: s.cfg.Claim,
		results: sink.log, sink: sink, first: s.cfg.FirstAttempt, gate: s.gate, speed: speed, stop: ctx.Done(),
		consumer: s.cfg.Consumer, maxDeliver: s.cfg.MaxDeliver, log: s.log, metrics: s.metrics, tracer: observe.Tracer(s.cfg.TracerProvider, "webhooker")}
	sch.work, sch.chunkSize = f.workChunk, s.cfg.Chunk
	router, err := newRouter(s.fanoutNC, f, s.cfg.Handlers, s.log)
	if err != nil {
		return err
	}
	var wg, first sync.WaitGroup
	first.Add(1) // the first prune (retain)
	if s.lag != nil {
		wg.Add(2)
		first.Add(1)
		var once sync.Once
		go func() { defer wg.Done(); s.lag.Run(ctx) }()
		go func() {
			defer wg.Done()
			lifecycle.Every(ctx, s.cfg.LagEvery, func(ctx context.Context) {
				defer once.Do(first.Done)
				if err := s.measureBacklog(ctx); err != nil && ctx.Err() == nil {
					s.log.WarnContext(ctx, "measure the webhook backlog", "error", err)
				}
			})
		}()
	}
	// Claims are renewed until every attempt has finished and its outcome
	// is written, not only until ctx ends.
	renewCtx, stopRenewing := context.WithCancel(context.WithoutCancel(ctx))
	renewed := make(chan struct{})
	go func() { defer close(renewed); held.run(renewCtx, s.cfg.RenewEvery) }()
	wg.Add(2)
	go func() { defer wg.Done(); sch.run(ctx, s.cfg.ScheduleEvery) }()
	go func() { defer wg.Done(); s.retain(ctx, first.Done) }()
	go func() { first.Wait(); s.settleOnce.Do(func() { close(s.settled) }) }()
	runErr := router.Run(ctx)
	wg.Wait()
	sch.wait()
	d.Wait()
	close(rw.in)
	<-rw.done
	stopRenewing()
	<-renewed
	giveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := held.giveBack(giveCtx); err != nil {
		s.log.WarnContext(ctx, "give back delivery claims (the others take them when they end)", "error", err)
	}
	return runErr
}

// attemptMeter is the attempter's observer: the first-attempt delay and
// each attempt's outcome go to the metrics, and how long each endpoint
// took to answer to the speeds the fan-out's attempt-first reads.
type attemptMeter struct {
	metrics *Metrics // nil: none
	speed   *endpointSpeed
}

func (m attemptMeter) FirstAttempt(delay time.Duration) { m.metrics.firstAttemptDelay(delay) }

func (m attemptMeter) Answered(endpointID string, took time.Duration) {
	m.speed.observe(endpointID, took)
}

func (m attemptMeter) Attempted(outcome string) { m.metrics.attempt(outcome) }

// leaseConfig is the configuration of the renewals' pool: pool's, with
// one connection.
func leaseConfig(pool *pgxpool.Pool) *pgxpool.Config {
	cfg := pool.Config()
	cfg.MaxConns, cfg.MinConns, cfg.MinIdleConns = 1, 0, 0
	return cfg
}

// backlogSQL counts the deliveries due at $1 that no replica has claimed
// — due rows, and the endpoints of chunks of shared fan-outs — and finds
// when the oldest became due.
const backlogSQL = `SELECT d.n + k.n, least(d.oldest, k.oldest)
	FROM (SELECT count(*) AS n, min(due_at) AS oldest FROM webhook.due WHERE due_at <= $1) d,
		(SELECT coalesce(sum(cardinality(endpoint_ids)), 0) AS n, min(due_at) AS oldest FROM webhook.chunks WHERE due_at <= $1) k`

// measureBacklog sets the backlog gauges: deliveries due that no replica
// has claimed, and the age of the oldest. What the webhooker's
// ScaledObject reads (deploy/base/scaledobjects.yaml) is the same count.
func (s *Service) measureBacklog(ctx context.Context) error {
	now := s.cfg.Now()
	var due int64
	var oldest *time.Time
	if err := s.pool.QueryRow(ctx, backlogSQL, now).Scan(&due, &oldest); err != nil {
		return err
	}
	var age time.Duration
	if oldest != nil {
		age = now.Sub(*oldest)
	}
	s.metrics.backlog(due, age)
	return nil
}

// ScheduleNow runs one scheduler pass at once (tests with a fake clock).
func (s *Service) ScheduleNow(ctx context.Context) (int, error) {
	s.mu.Lock()
	sch := s.scheduler
	s.mu.Unlock()
	if sch == nil {
		return 0, fmt.Errorf("webhooker is not running")
	}
	return sch.tick(ctx)
}

// recordDisabled appends a webhook.disabled event (creator system) for an
// endpoint the system disabled.
func (s *Service) recordDisabled(ctx context.Context, tenant, endpointID, reason string) {
	s.log.WarnContext(ctx, "disabled webhook endpoint", "tenant", tenant, "endpoint_id", endpointID, "reason", reason)
	if s.publisher == nil {
		return
	}
	particulars := fmt.Sprintf(`{"reason":%q}`, reason)
	_, err := s.publisher.Append(ctx, events.Event{
		ID:          "webhook-disabled-" + endpointID + "-" + fmt.Sprint(s.cfg.Now().Unix()),
		Tenant:      tenant,
		Action:      "disabled",
		Eventable:   events.Ref{Type: "webhook", ID: endpointID},
		Creator:     events.Ref{Type: events.SystemCreator, ID: "webhooker"},
		Particulars: []byte(particulars),
	})
	if err != nil {
		s.log.ErrorContext(ctx, "record webhook.disabled event", "endpoint_id", endpointID, "error", err)
	}
}

// retain deletes deliveries and attempts older than the retention, in
// small batches, once a minute; pruned is called after the first pass.
func (s *Service) retain(ctx context.Context, pruned func()) {
	var once sync.Once
	lifecycle.Every(ctx, time.Minute, func(ctx context.Context) {
		defer once.Do(pruned)
		if _, err := s.PruneLog(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "prune delivery log", "error", err)
		}
		if err := (pgRateWindows{s.pool}).prune(ctx, s.cfg.Now()); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "prune rate-limit slots", "error", err)
		}
	})
}

// PruneLog deletes the attempts and finished deliveries older than the
// retention and returns how many deliveries went.
func (s *Service) PruneLog(ctx context.Context) (int64, error) {
	return s.ledger.Prune(ctx, s.cfg.Now().Add(-s.cfg.Retention))
}
