package webhooker

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/internal/consume"
	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/groupcommit"
	"github.com/eventline/eventline/internal/observe"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
	"github.com/eventline/eventline/pkg/events"
)

// maxInsert is the most deliveries one insert statement writes.
const maxInsert = 5000

// newInserts returns the group commit of delivery inserts; the
// deliveries recorded claimed are held (leases) before their jobs are
// handed back, so no outcome can be written before its delivery is held.
// announce acts on what the recorded outcomes announce (nil: nothing).
// An insert submitted while none commits or waits is committed by its
// handler itself (groupcommit.Config.Inline): at low rates every event
// comes alone, and handing it to the batcher's goroutines cost more
// wake-ups than the insert.
func newInserts(l *delivery.Ledger, announce func(context.Context, delivery.Announcements), held *leases, now func() time.Time, claim time.Duration) *groupcommit.Batcher[delivery.Item, inserted] {
	return groupcommit.New(func(ctx context.Context, items []delivery.Item) ([]inserted, error) {
		at := now()
		out := insertSplitting(ctx, l, announce, items, at, at.Add(claim))
		for _, it := range out {
			held.holdRecorded(it.jobs, at.Add(claim))
		}
		return out, nil
	}, func(it delivery.Item) int { return len(it.Jobs) }, groupcommit.Config{MaxBatch: maxInsert, MaxInflight: 2, Inline: true})
}

// inserted is the result of one delivery.Item of a group commit: the jobs
// created without an outcome, or why its deliveries were not recorded.
type inserted struct {
	jobs []delivery.Job
	err  error
}

// insertSplitting records the deliveries of items (Ledger.Record) and
// hands what each committed statement announces to announce (nil:
// nothing). When the database refuses the data of one event
// (postgres.Permanent), it splits items in halves and records each, so the
// refused event fails alone, to be dead-lettered, and the events grouped
// with it are recorded. Any other error fails every item of the statement
// that hit it.
func insertSplitting(ctx context.Context, l *delivery.Ledger, announce func(context.Context, delivery.Announcements), items []delivery.Item, now, claimUntil time.Time) []inserted {
	out := make([]inserted, len(items))
	created, a, err := l.Record(ctx, items, now, claimUntil)
	switch {
	case err == nil:
		if announce != nil {
			announce(ctx, a)
		}
		for i := range out {
			out[i].jobs = created[i]
		}
	case len(items) > 1 && postgres.Permanent(err) && ctx.Err() == nil:
		half := len(items) / 2
		copy(out, insertSplitting(ctx, l, announce, items[:half], now, claimUntil))
		copy(out[half:], insertSplitting(ctx, l, announce, items[half:], now, claimUntil))
	default:
		for i := range out {
			out[i].err = err
		}
	}
	return out
}

// DefaultConsumer is the durable name of the fan-out.
const DefaultConsumer = "webhooker"

// EnsureConsumer creates or updates the fan-out's durable consumer;
// ackWait 0 is consume.DefaultAckWait.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, name string, maxDeliver int, ackWait time.Duration) (jetstream.Consumer, error) {
	return consume.Ensure(ctx, js, name, "eventline webhooker: fan-out of EVENTS to webhook endpoints", maxDeliver, ackWait)
}

// fanout creates one delivery per matching endpoint for each event and
// makes its first attempt: before recording it on the event's first
// delivery (see firstattempt.go), after otherwise.
type fanout struct {
	pool *pgxpool.Pool
	// inserts coalesces the delivery inserts of concurrent handlers into
	// one statement and commit (group commit).
	inserts    *groupcommit.Batcher[delivery.Item, inserted]
	ledger     *delivery.Ledger // shares large fan-outs (Ledger.Share)
	registry   *endpoint.Registry
	submit     func(...delivery.Job) []delivery.Job // returns the jobs it could not queue
	leases     *leases                              // what this replica holds claimed
	scheduler  *scheduler                           // takes the chunks of shared fan-outs (share)
	shareAbove int
	chunkSize  int                    // most endpoints of one chunk of a shared fan-out
	results    func(delivery.Outcome) // logs an outcome once its delivery is recorded
	sink       *firstSink             // routes the outcomes of attempts made first to their collector
	first      FirstAttemptConfig
	gate       *firstGate
	speed      *endpointSpeed
	stop       <-chan struct{} // closed on shutdown: waits for attempts end
	now        func() time.Time
	claim      time.Duration
	consumer   string
	maxDeliver int
	log        *slog.Logger
	metrics    *Metrics
	tracer     trace.Tracer // nil: no spans
}

func (f *fanout) handle(msg *message.Message) error {
	ctx := msg.Context()
	ev, err := consume.Event(msg)
	if err != nil {
		return f.deadLetter(ctx, msg, err)
	}
	eps := f.registry.Match(ev)
	if len(eps) == 0 {
		return nil
	}
	// The fan-out span joins the event's trace; each attempt is another
	// child of the event (retries happen long after this span ended).
	tracer := f.tracer
	if tracer == nil {
		tracer = observe.Tracer(nil, "webhooker")
	}
	ctx, span := tracer.Start(observe.WithTraceparent(ctx, ev.Traceparent), "webhook fanout", trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("eventline.event.id", ev.ID), attribute.String("eventline.tenant", ev.Tenant),
			attribute.Int64("messaging.nats.stream_sequence", int64(consume.StreamSeq(msg))), attribute.Int("eventline.webhook.endpoints", len(eps)))
	}
	seq := consume.StreamSeq(msg)
	f.gate.taken(seq)
	delivered, _ := strconv.ParseUint(msg.Metadata.Get(consume.MetaDelivered), 10, 64)
	// A retry of this handler (the record failed) must not attempt again:
	// it records first, like a redelivery. A shared fan-out is attempted
	// a chunk at a time.
	shared, attempted := len(eps) > f.shareAbove, len(eps)
	if shared {
		attempted = min(attempted, f.chunkSize)
	}
	first := msg.Metadata.Get(metaAttempted) == "" && f.gate.attemptFirst(seq, delivered, ev.RecordedAt, attempted)
	if shared {
		err = f.share(ctx, ev, seq, eps, !first)
	} else {
		// MarshalJSON writes compact JSON already: json.Marshal would
		// only validate and compact it a second time.
		body, encErr := ev.MarshalJSON()
		if encErr != nil {
			return f.deadLetter(ctx, msg, fmt.Errorf("encode delivery body: %w", encErr))
		}
		jobs := make([]delivery.Job, len(eps))
		for i, e := range eps {
			jobs[i] = delivery.Job{DeliveryID: delivery.NewID(), Tenant: ev.Tenant, EndpointID: e.ID, Event: ev, Attempt: 1, Body: body}
		}
		if first {
			msg.Metadata.Set(metaAttempted, "true")
			err = f.attemptFirst(ctx, jobs, 0)
		} else {
			err = f.recordThenAttempt(ctx, jobs, 0)
		}
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		// Dead-lettered at once when the database refuses the event's
		// data (postgres.Permanent), else retried, then nacked for
		// redelivery (package consume).
		return err
	}
	return nil
}

// metaAttempted marks a message whose first attempts were made.
const metaAttempted = "eventline_attempted"

// share cuts the fan-out of an event to eps into chunks (Ledger.Share)
// that every replica's scheduler takes, as many as its dispatcher has
// room for, and works on as a fan-out that is not shared (workChunk): so
// replicas share a large fan-out, none holds much more than it can start
// soon, and each delivery is written once, with its first outcome
// (docs/architecture.md §15). recordFirst: the chunks'
// deliveries are recorded before they are attempted (a redelivery).
func (f *fanout) share(ctx context.Context, ev events.Event, seq uint64, eps []endpoint.Endpoint, recordFirst bool) error {
	ids := make([]string, len(eps))
	for i, e := range eps {
		ids[i] = e.ID
	}
	// Match returns them ordered by id: the same event cut again (a
	// redelivery) gives the same chunks.
	if _, err := f.ledger.Share(ctx, ev.Tenant, ev.ID, int64(seq), ids, f.chunkSize, f.now(), recordFirst); err != nil {
		return err
	}
	f.scheduler.nudge()
	return nil
}

// workChunk makes the deliveries of one chunk of a shared fan-out: its
// first attempts, then the record of each delivery with its outcome, as
// for an event not shared (attemptFirst); or, for a chunk taken before or
// cut from a redelivery, and while records fail, the record of those
// that do not exist, then their attempts. Either record deletes the
// chunk; when it fails the chunk stays, and is taken again, recorded
// first, once its claim ends — unless Postgres refuses its data, which
// no later try would change: then it is dropped.
func (f *fanout) workChunk(ctx context.Context, c delivery.Chunk, ev events.Event, body []byte) {
	jobs := make([]delivery.Job, len(c.EndpointIDs))
	for i, id := range c.EndpointIDs {
		jobs[i] = delivery.Job{DeliveryID: delivery.NewID(), Tenant: c.Tenant, EndpointID: id, Event: ev, Attempt: 1, Body: body}
	}
	var err error
	if c.RecordFirst || !f.gate.recording() {
		err = f.recordThenAttempt(ctx, jobs, c.ID)
	} else {
		err = f.attemptFirst(ctx, jobs, c.ID)
	}
	switch {
	case err == nil:
	case postgres.Permanent(err):
		// Postgres refuses the data: taken again, the chunk would fail
		// again, every claim, for ever.
		f.log.ErrorContext(ctx, "dropped a chunk of a shared fan-out whose deliveries Postgres refuses to record", "chunk", c.ID, "event_id", c.EventID, "deliveries", len(jobs), "error", err)
		if err := f.ledger.DropChunk(ctx, c.ID); err != nil {
			f.log.WarnContext(ctx, "drop chunk", "chunk", c.ID, "error", err)
		}
	default:
		f.log.WarnContext(ctx, "record a chunk of a shared fan-out (taken again, recorded first, when its claim ends)", "chunk", c.ID, "event_id", c.EventID, "error", err)
	}
}

// recordThenAttempt records the deliveries that do not exist yet, claimed,
// and queues their first attempts; chunk is the webhook.chunks row they
// come from (0: none).
func (f *fanout) recordThenAttempt(ctx context.Context, jobs []delivery.Job, chunk int64) error {
	created, err := f.record(ctx, jobs, nil, chunk)
	if err != nil {
		return err
	}
	f.metrics.created(len(created))
	f.leases.releaseJobs(f.submit(created...)) // no room: due once their claim ends
	return nil
}

// attemptFirst makes the first attempts of jobs, waits for them (not for
// slow endpoints, see FirstAttemptConfig), and records every delivery,
// those attempted with their outcome; chunk is the webhook.chunks row
// they come from (0: none).
func (f *fanout) attemptFirst(ctx context.Context, jobs []delivery.Job, chunk int64) error {
	w := newFirstAttempts()
	now := make([]delivery.Job, 0, len(jobs))
	for _, j := range jobs {
		if !f.speed.isSlow(j.EndpointID) {
			now = append(now, j)
		}
	}
	w.attempting(now)
	f.sink.expect(w, now) // before submit: an outcome can come at once
	attempted := make(map[string]bool, len(now))
	for _, j := range now {
		attempted[j.DeliveryID] = true
	}
	if dropped := f.submit(now...); len(dropped) > 0 {
		w.dropped(dropped)
		f.sink.forget(dropped)
		for _, j := range dropped {
			delete(attempted, j.DeliveryID)
		}
	}
	done, capped := w.wait(f.first, func(ep string) bool { return f.speed.answeredWithin(ep, f.first.Wait) }, f.stop)
	if len(done) < len(attempted) {
		finished := make(map[string]bool, len(done))
		for _, o := range done {
			finished[o.Job.DeliveryID] = true
		}
		for _, j := range jobs {
			if attempted[j.DeliveryID] && !finished[j.DeliveryID] {
				f.speed.markSlow(j.EndpointID, capped)
			}
		}
	}
	created, err := f.recordAttempted(ctx, jobs, done, chunk)
	if err != nil {
		w.abandon()
		return err
	}
	w.recorded(f.results)
	f.metrics.created(len(created) + len(done))
	f.metrics.outcomesLogged(len(done))
	// Claimed and not attempted yet: slow endpoints, and jobs the
	// dispatcher had no room for (it drops them again while full; they
	// are let go and become due once their claim ends).
	later := created[:0]
	for _, j := range created {
		if !attempted[j.DeliveryID] {
			later = append(later, j)
		}
	}
	f.leases.releaseJobs(f.submit(later...))
	return nil
}

// recordAttempted records deliveries whose first attempts were made,
// trying again for a while when it fails (Postgres down): once the event
// is redelivered instead, its deliveries are attempted again. A refusal
// of the data (postgres.Permanent) is not tried again: the event is
// dead-lettered.
func (f *fanout) recordAttempted(ctx context.Context, jobs []delivery.Job, done []delivery.Outcome, chunk int64) ([]delivery.Job, error) {
	deadline := time.Now().Add(f.first.RecordFor)
	for pause := 100 * time.Millisecond; ; pause = min(2*pause, 2*time.Second) {
		created, err := f.record(ctx, jobs, done, chunk)
		if err == nil || postgres.Permanent(err) || time.Now().Add(pause).After(deadline) {
			return created, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-f.stop:
			return nil, err
		case <-time.After(pause):
		}
	}
}

// record inserts the deliveries of jobs, those in done with their
// outcome, in statements of at most maxInsert, and returns the jobs it
// created without an outcome, claimed by this replica. The last statement
// deletes chunk, the webhook.chunks row they come from (0: none).
func (f *fanout) record(ctx context.Context, jobs []delivery.Job, done []delivery.Outcome, chunk int64) ([]delivery.Job, error) {
	var created []delivery.Job
	split := len(jobs) > maxInsert
	for len(jobs) > 0 {
		n := min(len(jobs), maxInsert)
		item := delivery.Item{Jobs: jobs[:n], Done: done}
		if n == len(jobs) {
			item.Chunk = chunk
		}
		if split && len(done) > 0 { // several statements: each takes its own outcomes
			in := make(map[string]bool, n)
			for _, j := range item.Jobs {
				in[j.DeliveryID] = true
			}
			item.Done = nil
			for _, o := range done {
				if in[o.Job.DeliveryID] {
					item.Done = append(item.Done, o)
				}
			}
		}
		res, err := f.inserts.Submit(ctx, item)
		if err == nil {
			err = res.err
		}
		if err != nil {
			if !postgres.Permanent(err) { // no redelivery follows a refusal: it is dead-lettered
				f.gate.failed()
			}
			return nil, err
		}
		created = append(created, res.jobs...)
		jobs = jobs[n:]
	}
	return created, nil
}

func (f *fanout) deadLetter(ctx context.Context, msg *message.Message, cause error) error {
	seq, subject := consume.StreamSeq(msg), msg.Metadata.Get(consume.MetaSubject)
	f.log.WarnContext(ctx, "dead-lettered a message", "stream_seq", seq, "subject", subject, "error", cause)
	return deadletter.Add(ctx, f.pool, consume.Letter(f.consumer, msg, cause))
}

// newRouter builds the Watermill router of the fan-out with handlers
// concurrent handlers bound to the pre-provisioned durable.
func newRouter(nc *nats.Conn, f *fanout, handlers int, log *slog.Logger) (*consume.Router, error) {
	return consume.NewRouter(nc, consume.Config{Consumer: f.consumer, Name: "webhook-fanout", Handlers: handlers,
		MaxDeliver: f.maxDeliver, Handle: f.handle, DeadLetter: f.deadLetter, Log: log})
}
