package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/observe"
	"github.com/eventline/eventline/pkg/events"
)

// DefaultConsumer is the notifier's durable name.
const DefaultConsumer = "notifier"

// PriorityGroup is the notifier durable's priority group. The durable pins
// it to one client: one replica receives the stream while the others wait
// as hot standbys, and the pin moves when the pinned replica stops asking
// for messages for PinnedTTL (it crashed) or gives the pin up (a clean
// stop).
const PriorityGroup = "notifier"

// DefaultPinnedTTL is how long the durable stays pinned to a replica that
// stopped asking for messages: how long a crash stalls notifications
// before a standby takes over. A pinned replica asks at least every third
// of it (pullExpiry); one that stalls longer loses the pin, which costs a
// takeover, never the order.
const DefaultPinnedTTL = 10 * time.Second

// ConsumerConfig is the notifier durable: explicit acks, 30 s ack wait,
// maxDeliver deliveries, pinned to one client of PriorityGroup at a time.
// The replica that applies the stream needs at most a few thousand
// messages in flight.
func ConsumerConfig(name string, maxDeliver int, pinnedTTL time.Duration) jetstream.ConsumerConfig {
	if pinnedTTL <= 0 {
		pinnedTTL = DefaultPinnedTTL
	}
	return jetstream.ConsumerConfig{
		Durable:        name,
		Description:    "eventline notifier: recipients, watches, inbox and digests, in stream order",
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        30 * time.Second,
		MaxDeliver:     maxDeliver,
		MaxAckPending:  10_000,
		FilterSubject:  events.SubjectPrefix + ".>",
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{PriorityGroup},
		PinnedTTL:      pinnedTTL,
	}
}

// EnsureConsumer creates or updates the notifier's durable
// (ConsumerConfig). A durable created before keeps its MaxWaiting, which
// the server cannot change.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, name string, maxDeliver int, pinnedTTL time.Duration) (jetstream.Consumer, error) {
	cfg := ConsumerConfig(name, maxDeliver, pinnedTTL)
	if old, err := js.Consumer(ctx, events.StreamName, name); err == nil {
		cfg.MaxWaiting = old.CachedInfo().Config.MaxWaiting
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("look up consumer %s: %w", name, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamName, cfg)
	if err != nil {
		return nil, fmt.Errorf("create or update consumer %s: %w", name, err)
	}
	return cons, nil
}

// item is one stream message, parsed or poisoned.
type item struct {
	seq         uint64
	subject     string
	data        []byte
	traceparent string
	streamTime  time.Time // when the stream stored it: recorded_at
	msgID       string    // its Nats-Msg-Id header, kept with a dead letter
	event       *events.Event
	err         error // why it cannot be applied: dead-letter it
	// msgs are the deliveries of this message to this replica (a
	// redelivery adds one), acked once it is committed; none when it was
	// read from the stream to fill a gap.
	msgs     []jetstream.Msg
	touched  time.Time // received, or last told the server it is in progress
	received time.Time // received (or read from the stream)
}

// parseItem parses one stream message (events.ParseStored): the one place
// the notifier decodes the stream.
func parseItem(m events.Message) *item {
	now := time.Now()
	it := &item{seq: m.Seq, subject: m.Subject, data: m.Data, traceparent: m.Header.Get("traceparent"),
		streamTime: m.Timestamp, msgID: strings.Join(m.Header.Values(events.HeaderMsgID), "\n"), touched: now, received: now}
	ev, err := events.ParseStored(m)
	if err != nil {
		it.err = err
		return it
	}
	it.event = &ev
	return it
}

// orderedConsumer applies the notifier durable in stream order (see
// pipeline.go). Every replica runs one; the durable's pin sends the
// stream to one of them.
type orderedConsumer struct {
	name    string
	cons    jetstream.Consumer // on the consumer's own connection
	str     jetstream.Stream
	pool    *pgxpool.Pool
	w       *writer
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	tracer  trace.Tracer
	// hook, when set, runs at "before_commit" inside each batch's
	// transaction (an error fails the batch there) and at "failed" when a
	// batch failed (s.err says why). Tests use it.
	hook func(stage string, s *slot) error
}

// Run applies the stream until ctx ends, then lets running batches
// commit, hands every message not committed back for redelivery and gives
// up the pin so that a standby takes over at once.
func (c *orderedConsumer) Run(ctx context.Context) error {
	last, err := c.startCheckpoint(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	msgs := make(chan jetstream.Msg, 2*c.cfg.Batch)
	cc, err := c.cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done():
			_ = m.Nak()
		}
	},
		jetstream.PullMaxMessages(2*c.cfg.Batch),
		jetstream.PullPriorityGroup(PriorityGroup),
		jetstream.PullExpiry(pullExpiry(c.cfg.PinnedTTL)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) && !errors.Is(err, jetstream.ErrPinIDMismatch) {
				c.log.Warn("notifier consume", "error", err)
			}
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", c.name, err)
	}
	l := newLoop(c, last)
	l.run(ctx, msgs)
	// Hand back what was not committed: what the client buffered (Drain
	// passes it to the callback, which Naks it), what waits in msgs, and
	// what the loop held.
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-time.After(5 * time.Second):
		cc.Stop()
	}
	nakAll(msgs)
	l.handBack()
	c.unpin(l.pinID)
	return nil
}

// nakAll returns the messages waiting in msgs for redelivery.
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

// pullExpiry is how long a pull request waits: a pinned replica renews its
// request at least this often, well within the pin's TTL.
func pullExpiry(pinnedTTL time.Duration) time.Duration {
	if pinnedTTL <= 0 {
		pinnedTTL = DefaultPinnedTTL
	}
	return min(30*time.Second, max(time.Second, pinnedTTL/3))
}

// startCheckpoint reads the checkpoint, retrying until ctx ends.
func (c *orderedConsumer) startCheckpoint(ctx context.Context) (uint64, error) {
	backoff := 100 * time.Millisecond
	for {
		last, err := c.readCheckpoint(ctx)
		if err == nil {
			return last, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		c.log.WarnContext(ctx, "read the notifier checkpoint; retrying", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(5*time.Second, 2*backoff)
	}
}

func (c *orderedConsumer) readCheckpoint(ctx context.Context) (uint64, error) {
	info, err := c.str.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	return checkpoint(ctx, c.pool, c.name, info.Created, func(ctx context.Context) (uint64, error) {
		ci, err := c.cons.Info(ctx)
		if err != nil {
			return 0, err
		}
		return ci.AckFloor.Stream, nil
	})
}

// unpin gives up the durable's pin when this replica holds it (pinID is
// the pin its last message carried), so a standby gets the stream now
// rather than after PinnedTTL.
func (c *orderedConsumer) unpin(pinID string) {
	if pinID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.cons.Info(ctx)
	if err != nil {
		return
	}
	for _, g := range info.PriorityGroups {
		if g.Group == PriorityGroup && g.PinnedClientID == pinID {
			if err := c.str.UnpinConsumer(ctx, c.name, PriorityGroup); err != nil {
				c.log.Warn("give up the notifier pin", "error", err)
			}
		}
	}
}

// commit is a batch's last step inside its transaction: dead-letter its
// poison messages, wait for the batches before it to commit, and move the
// checkpoint past it (which fails if another replica got there first),
// unless advanced says the first round trip moved it already.
func (c *orderedConsumer) commit(ctx context.Context, tx pgx.Tx, s *slot, advanced bool) error {
	for _, it := range s.items {
		if it.err == nil {
			continue
		}
		// A message that failed validation carries its field errors: Add
		// records it as the tenant's rejection in the same statement.
		l := deadletter.Letter{Consumer: c.name, StreamSeq: it.seq, Subject: storable(it.subject), Data: it.data,
			StreamTime: it.streamTime, MsgID: storable(it.msgID), Error: storable(it.err.Error()), Errors: deadletter.FieldErrors(it.err)}
		if err := deadletter.Add(ctx, tx, l); err != nil {
			return err
		}
	}
	if c.hook != nil {
		if err := c.hook("before_commit", s); err != nil {
			return err
		}
	}
	if advanced {
		return nil
	}
	if err := s.waitBefore(ctx); err != nil {
		return err
	}
	return advance(ctx, tx, c.name, s.after, s.last)
}

// advanceFirst moves the checkpoint in the transaction's first round trip
// when every batch before s has committed already (always at low rates,
// where a batch that is not full starts only when none runs): one round
// trip fewer per batch. The checkpoint row stays locked until the
// transaction ends, as it did from the last step on; a later batch of this
// replica moves it only after this one committed (waitBefore), and another
// replica's batch is fenced out as before. *advanced tells commit.
func (c *orderedConsumer) advanceFirst(s *slot, advanced *bool) firstFunc {
	return func(b *pgx.Batch) func(pgx.BatchResults) error {
		if !s.beforeCommitted() {
			return nil
		}
		queueAdvance(b, c.name, s.after, s.last)
		return func(br pgx.BatchResults) error {
			if err := readAdvance(br); err != nil {
				return err
			}
			*advanced = true
			return nil
		}
	}
}

// storable is s as Postgres text takes it: valid UTF-8 without NUL (a
// letter Postgres refused would block the stream behind it).
func storable(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
}

// apply runs one batch's transaction.
func (c *orderedConsumer) apply(ctx context.Context, s *slot) {
	evs := make([]*events.Event, 0, len(s.items))
	for _, it := range s.items {
		if it.err == nil {
			evs = append(evs, it.event)
		}
	}
	advanced := false
	s.res, s.err = c.w.applyWith(ctx, evs, s, c.advanceFirst(s, &advanced), func(tx pgx.Tx) error { return c.commit(ctx, tx, s, advanced) })
}

// committed records a committed batch: acks (dead letters are
// terminated: they are kept in the table), metrics and spans.
func (c *orderedConsumer) committed(ctx context.Context, s *slot) {
	dead := 0
	for _, it := range s.items {
		if it.err != nil {
			dead++
			c.log.WarnContext(ctx, "dead-lettered a message", "stream_seq", it.seq, "subject", it.subject, "error", it.err)
		}
		for _, m := range it.msgs {
			if it.err != nil {
				_ = m.Term()
			} else {
				_ = m.Ack()
			}
		}
	}
	c.metrics.applied(s.res)
	c.metrics.event("dead_lettered", dead)
	if c.log.Enabled(ctx, slog.LevelDebug) {
		c.log.DebugContext(ctx, "applied a batch", "first_seq", s.after+1, "last_seq", s.last, "messages", len(s.items),
			"applied", s.res.applied, "duplicates", s.res.duplicates, "notifications", s.res.notifications, "dead_lettered", dead,
			"took_ms", time.Since(s.started).Milliseconds())
	}
	c.trace(ctx, s)
}

// trace records, for every event whose message carries a traceparent, a
// span from the start of its batch to the commit.
func (c *orderedConsumer) trace(ctx context.Context, s *slot) {
	if c.tracer == nil {
		return
	}
	for _, it := range s.items {
		if it.traceparent == "" {
			continue
		}
		_, span := c.tracer.Start(observe.WithTraceparent(ctx, it.traceparent), "notifier notify",
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(s.started))
		if span.IsRecording() {
			id := ""
			if it.event != nil {
				id = it.event.ID
			}
			span.SetAttributes(attribute.String("eventline.event.id", id), attribute.Int("messaging.batch.message_count", len(s.items)),
				attribute.Int64("messaging.nats.stream_sequence", int64(it.seq)))
			if it.err != nil {
				span.SetStatus(codes.Error, "dead-lettered: "+it.err.Error())
			}
		}
		span.End()
	}
}

// ReplayDeadLetter applies a dead-lettered message again (`eventline dlq
// replay --consumer notifier`). It returns the reason the letter is still
// poison (recorded on the letter), or an error reaching the database. The
// event is applied now, after the events that followed it in the stream.
func ReplayDeadLetter(ctx context.Context, pool *pgxpool.Pool, l deadletter.Letter) (poison, err error) {
	e, poison, err := deadletter.Event(ctx, pool, l)
	if err != nil || poison != nil {
		return poison, err
	}
	w := &writer{pool: pool, now: time.Now}
	_, err = w.applyWith(ctx, []*events.Event{&e}, nil, nil, func(tx pgx.Tx) error {
		return deadletter.MarkReplayed(ctx, tx, l.Consumer, l.StreamSeq)
	})
	return nil, err
}
