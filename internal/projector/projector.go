// Package projector projects the EVENTS stream into Postgres timelines and
// serves them (docs/contract.md §2 "Timelines", docs/architecture.md §6). Batches are
// written in one transaction with the consumer's checkpoint and acked only
// after commit; the event id is a unique key, so redelivery never stores an
// event twice. Messages that cannot be projected are dead-lettered and never
// block the others.
package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/observe"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/pkg/events"
)

// DefaultConsumer is the durable name the projector replicas share.
const DefaultConsumer = "projector"

// ConsumerConfig shapes the durable consumer. Zero values take defaults.
type ConsumerConfig struct {
	Name          string        // default "projector"
	AckWait       time.Duration // redelivery after this without an ack; default 30s
	MaxDeliver    int           // default 50
	MaxAckPending int           // default 20000
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.Name == "" {
		c.Name = DefaultConsumer
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 50
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 20000
	}
	return c
}

// EnsureConsumer creates or updates the durable pull consumer on EVENTS.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, c ConsumerConfig) (jetstream.Consumer, error) {
	c = c.withDefaults()
	cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable:       c.Name,
		Description:   "eventline projector: EVENTS into Postgres timelines",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		MaxAckPending: c.MaxAckPending,
		FilterSubject: events.SubjectPrefix + ".>",
	})
	if err != nil {
		return nil, fmt.Errorf("create or update consumer %s: %w", c.Name, err)
	}
	return cons, nil
}

// Config tunes one projector worker. Zero values take defaults.
type Config struct {
	// Consumer is the durable this worker reads; its name is also the
	// checkpoint and dead-letter key. Default "projector".
	Consumer string
	// Generation pins the timeline generation written to (a rebuild); 0
	// follows timeline.current.
	Generation int
	// BatchSize is the most messages written per transaction. Default 500.
	BatchSize int
	// RetryBackoff is the first wait after a failed transaction; it doubles
	// up to 5s. Default 100ms.
	RetryBackoff time.Duration
	// Tracer, when set, records a span per projected event as a child of
	// the event's traceparent. Nil: no spans (no per-message cost).
	Tracer trace.Tracer
}

func (c Config) withDefaults() Config {
	if c.Consumer == "" {
		c.Consumer = DefaultConsumer
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 100 * time.Millisecond
	}
	return c
}

// Projector is one worker: it reads batches from the durable and writes
// them. Several workers, in one process or many, may share a durable.
type Projector struct {
	cfg     Config
	cons    jetstream.Consumer
	pool    *pgxpool.Pool
	log     *slog.Logger
	metrics *Metrics

	// hook, when set, runs at "before_commit" and "after_commit" (before
	// the acks); an error stops the worker there, as a crash would. Tests
	// use it.
	hook func(stage string, batch int) error

	// gen is the timeline generation this worker last locked (0: none
	// yet, or it moved): commitPipelined writes into it.
	gen atomic.Int64
}

// New returns a worker reading cons and writing into pool.
func New(cons jetstream.Consumer, pool *pgxpool.Pool, cfg Config, m *Metrics, log *slog.Logger) *Projector {
	return &Projector{cfg: cfg.withDefaults(), cons: cons, pool: pool, log: log, metrics: m}
}

// errStopped ends Run after a test hook or shutdown interrupted a batch.
var errStopped = errors.New("projector stopped")

// Run projects until ctx is cancelled. Messages fetched but not committed
// when it stops are left unacked and will be redelivered (to this or
// another replica) after AckWait; on a clean stop they are Nak'ed for
// immediate redelivery.
func (p *Projector) Run(ctx context.Context) error {
	msgs := make(chan jetstream.Msg, p.cfg.BatchSize)
	cc, err := p.cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done():
			_ = m.Nak()
		}
	},
		jetstream.PullMaxMessages(p.cfg.BatchSize),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) {
				p.log.Warn("projector consume", "error", err)
			}
		}))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer cc.Stop()
	batch := make([]jetstream.Msg, 0, p.cfg.BatchSize)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			handBack(cc, msgs)
			return nil
		case m := <-msgs:
			batch = append(batch, m)
		}
		// Take whatever else is already here: large batches under load,
		// no waiting when idle.
	fill:
		for len(batch) < p.cfg.BatchSize {
			select {
			case m := <-msgs:
				batch = append(batch, m)
			default:
				break fill
			}
		}
		if err := p.process(ctx, batch); err != nil {
			if ctx.Err() != nil {
				handBack(cc, msgs)
				return nil
			}
			if errors.Is(err, errStopped) {
				cc.Stop() // a test hook's crash: leave the rest to AckWait
				return nil
			}
			return err
		}
	}
}

// handBack ends consumption on a clean stop and returns every message
// fetched but not committed for immediate redelivery: Drain passes what
// the client has buffered to the callback (which Naks it, ctx being done,
// or queues it in msgs), then msgs is Nak'ed. Stop would discard the
// client's buffer and leave those messages to AckWait.
func handBack(cc jetstream.ConsumeContext, msgs chan jetstream.Msg) {
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-time.After(5 * time.Second):
		cc.Stop()
	}
	nakAll(msgs)
}

// nakAll returns buffered, unprocessed messages for redelivery.
func nakAll(msgs chan jetstream.Msg) {
	for {
		select {
		case m := <-msgs:
			_ = m.Nak()
		default:
			return
		}
	}
}

// item is one fetched message, parsed or poisoned.
type item struct {
	msg    jetstream.Msg
	seq    uint64
	stored time.Time // the stream timestamp
	event  events.Event
	err    error // why it cannot be projected: dead-letter it
}

func parse(m jetstream.Msg) item {
	it := item{msg: m}
	meta, err := m.Metadata()
	if err != nil {
		it.err = fmt.Errorf("read message metadata: %w", err)
		return it
	}
	it.seq, it.stored = meta.Sequence.Stream, meta.Timestamp
	it.event, it.err = events.ParseStored(events.Message{Subject: m.Subject(), Data: m.Data(), Header: m.Headers(), Seq: it.seq, Timestamp: it.stored})
	return it
}

// process writes one batch and acks it after commit (see project).
func (p *Projector) process(ctx context.Context, msgs []jetstream.Msg) error {
	items := make([]item, len(msgs))
	for i, m := range msgs {
		items[i] = parse(m)
	}
	return p.project(ctx, items)
}

// project writes items in one transaction and acks them after commit,
// retrying transient failures until ctx ends. When the database refuses
// the data itself (postgres.Permanent: a data exception, a constraint),
// retrying cannot help: project splits items in halves and projects each,
// so the refused message ends up alone and is dead-lettered while the
// rest commit — about 2·log2(n) transactions for one such message in a
// batch of n.
func (p *Projector) project(ctx context.Context, items []item) error {
	start := time.Now()
	backoff := p.cfg.RetryBackoff
	if p.hook != nil {
		if err := p.hook("before_commit", len(items)); err != nil {
			return errStopped
		}
	}
	for {
		res, err := p.commit(ctx, items)
		if err == nil {
			p.metrics.batch(res, time.Since(start))
			for _, i := range res.rejected {
				p.metrics.rejection(deadletter.SubjectTenant(items[i].msg.Subject()), deadletter.FieldErrors(items[i].err))
			}
			p.trace(ctx, items, start)
			if p.hook != nil {
				if err := p.hook("after_commit", len(items)); err != nil {
					return errStopped
				}
			}
			for _, it := range items {
				if it.err != nil {
					_ = it.msg.Term() // kept in the dead-letter table
				} else {
					_ = it.msg.Ack()
				}
			}
			return nil
		}
		if postgres.Permanent(err) && ctx.Err() == nil {
			if len(items) > 1 {
				p.log.WarnContext(ctx, "batch refused by the database; splitting it to find the message", "messages", len(items), "error", err)
				half := len(items) / 2
				if err := p.project(ctx, items[:half]); err != nil {
					if ctx.Err() != nil {
						for _, rest := range items[half:] {
							_ = rest.msg.Nak()
						}
					}
					return err
				}
				return p.project(ctx, items[half:])
			}
			if items[0].err == nil {
				items[0].err = fmt.Errorf("refused by the database: %w", err)
				continue // dead-letter it in the next transaction
			}
			// Its dead letter is refused too: retry with backoff below
			// rather than in a tight loop.
		}
		p.log.WarnContext(ctx, "projecting batch failed; retrying", "messages", len(items), "error", err, "retry_in", backoff)
		for _, it := range items {
			_ = it.msg.InProgress() // keep our claim while we retry
		}
		select {
		case <-ctx.Done():
			// A clean stop (the commit was likely cancelled by it): redeliver
			// the batch at once rather than after AckWait.
			for _, it := range items {
				_ = it.msg.Nak()
			}
			return errStopped
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// trace records, for every item whose message carries a traceparent, a
// span from the start of its batch to the commit.
func (p *Projector) trace(ctx context.Context, items []item, start time.Time) {
	if p.cfg.Tracer == nil {
		return
	}
	for _, it := range items {
		tp := it.msg.Headers().Get("traceparent")
		if tp == "" {
			continue
		}
		_, span := p.cfg.Tracer.Start(observe.WithTraceparent(ctx, tp), "projector project",
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(start))
		if span.IsRecording() {
			span.SetAttributes(attribute.String("eventline.event.id", it.event.ID), attribute.Int("messaging.batch.message_count", len(items)),
				attribute.Int64("messaging.nats.stream_sequence", int64(it.seq)))
			if it.err != nil {
				span.SetStatus(codes.Error, "dead-lettered: "+it.err.Error())
			}
		}
		span.End()
	}
}

type batchResult struct {
	projected, duplicates, deadLettered int
	// rejected are the indexes of the items first dead-lettered by this
	// batch because they failed validation: each is counted once.
	rejected []int
}

// commit writes the batch, its dead letters and the checkpoint in one
// transaction.
func (p *Projector) commit(ctx context.Context, items []item) (batchResult, error) {
	if res, ok := p.commitPipelined(ctx, items); ok {
		return res, nil
	}
	var res batchResult
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		g := p.cfg.Generation
		if g == 0 {
			var err error
			if g, err = lockGeneration(ctx, tx); err != nil {
				return err
			}
			p.gen.Store(int64(g))
		}
		good := make([]events.Event, 0, len(items))
		var maxSeq uint64
		for i, it := range items {
			maxSeq = max(maxSeq, it.seq)
			if it.err != nil {
				res.deadLettered++
				// A validation failure is also recorded as the tenant's
				// rejection, in this statement (deadletter.Record).
				errs := deadletter.FieldErrors(it.err)
				first, err := deadletter.Record(ctx, tx, deadletter.Letter{Consumer: p.cfg.Consumer, StreamSeq: it.seq, Subject: it.msg.Subject(), Data: it.msg.Data(),
					StreamTime: it.stored, MsgID: strings.Join(it.msg.Headers().Values(events.HeaderMsgID), "\n"), Error: it.err.Error(), Errors: errs})
				if err != nil {
					return err
				}
				if first && errs != nil {
					res.rejected = append(res.rejected, i)
				}
				p.log.WarnContext(ctx, "dead-lettered a message", "stream_seq", it.seq, "subject", it.msg.Subject(), "error", it.err)
				continue
			}
			good = append(good, it.event)
		}
		stored, err := insertEvents(ctx, tx, g, good)
		if err != nil {
			return err
		}
		res.projected, res.duplicates = stored, len(good)-stored
		return recordProgress(ctx, tx, g, p.cfg.Consumer, maxSeq)
	})
	return res, err
}

// genGuardSQL takes the share lock of lockGeneration on timeline.current
// and fails, in the server, unless the current generation is $1: a row
// that is missing, doubled or names another generation raises an error
// (the text cast of the message), which rolls back the pipeline it is in.
const genGuardSQL = `SELECT CASE WHEN g = $1::int THEN g
	ELSE ('timeline generation is ' || coalesce(g::text, 'missing') || ', not ' || $1::int::text)::int END
FROM (SELECT (SELECT generation FROM timeline.current FOR SHARE) AS g) AS current`

// commitPipelined writes a batch of decodable messages in one round trip
// to Postgres (docs/architecture.md, "Projector: batch in, one
// transaction, ack after commit"): the generation guard, the insert and the
// checkpoint go as one pipeline, which the server runs as one implicit
// transaction ended by its Sync, so they commit together or not at all.
// The slow path (commit) takes five round trips (BEGIN, the lock, the
// insert, the checkpoint, COMMIT), and at low rates, with a batch per
// event, each one is a wake-up of this process and of its backend
// (BENCHMARKS.md, "Where the CPU goes at low rates").
//
// It writes into the generation the worker last locked, and the guard
// makes the transaction fail unless that generation is still current, as
// lockGeneration's lock makes a rebuild wait. ok is false when the batch
// was not committed here: a message to dead-letter (the slow path records
// it), no generation known yet, or any failure — the slow path then runs
// the batch again (the insert skips what is stored, the checkpoint only
// moves forward) and reports its error as before.
func (p *Projector) commitPipelined(ctx context.Context, items []item) (res batchResult, ok bool) {
	g, pinned := p.cfg.Generation, p.cfg.Generation != 0
	if !pinned {
		g = int(p.gen.Load())
	}
	if g == 0 || len(items) == 0 {
		return res, false
	}
	good := make([]events.Event, 0, len(items))
	var maxSeq uint64
	for _, it := range items {
		if it.err != nil {
			return res, false
		}
		good = append(good, it.event)
		maxSeq = max(maxSeq, it.seq)
	}
	args, err := insertArgs(good)
	if err != nil {
		return res, false
	}
	var stored int
	b := &pgx.Batch{}
	if !pinned {
		b.Queue(genGuardSQL, g)
	}
	b.Queue(fmt.Sprintf(insertSQL, schema(g)), args...).QueryRow(func(r pgx.Row) error { return r.Scan(&stored) })
	b.Queue(fmt.Sprintf(progressSQL, schema(g)), p.cfg.Consumer, int64(maxSeq))
	if err := p.pool.SendBatch(ctx, b).Close(); err != nil {
		if !pinned {
			p.gen.Store(0) // the slow path locks and remembers the current one
		}
		return res, false
	}
	res.projected, res.duplicates = stored, len(good)-stored
	return res, true
}
