package webhooker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
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
)

// newInserts returns the group commit of delivery inserts.
func newInserts(pool *pgxpool.Pool, now func() time.Time, claim time.Duration) *groupcommit.Batcher[fanoutItem, []job] {
	return groupcommit.New(func(ctx context.Context, items []fanoutItem) ([][]job, error) {
		return insertDeliveries(ctx, pool, items, now().Add(claim))
	}, func(it fanoutItem) int { return len(it.endpoints) }, groupcommit.Config{MaxBatch: 5000, MaxInflight: 2})
}

// DefaultConsumer is the durable name of the fan-out.
const DefaultConsumer = "webhooker"

// EnsureConsumer creates or updates the fan-out's durable consumer.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, name string, maxDeliver int) (jetstream.Consumer, error) {
	return consume.Ensure(ctx, js, name, "eventline webhooker: fan-out of EVENTS to webhook endpoints", maxDeliver)
}

// fanout creates one delivery per matching endpoint for each event and
// hands the new ones straight to the dispatcher for their first attempt.
type fanout struct {
	pool *pgxpool.Pool
	// inserts coalesces the delivery inserts of concurrent handlers into
	// one statement and commit (group commit).
	inserts    *groupcommit.Batcher[fanoutItem, []job]
	registry   *Registry
	submit     func(...job)
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
	// MarshalJSON writes compact JSON already: json.Marshal would only
	// validate and compact it a second time.
	body, err := ev.MarshalJSON()
	if err != nil {
		return f.deadLetter(ctx, msg, fmt.Errorf("encode delivery body: %w", err))
	}
	jobs, err := f.inserts.Submit(ctx, fanoutItem{event: ev, endpoints: eps, body: body})
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return err // retried, then nacked for redelivery
	}
	f.metrics.created(len(jobs))
	f.submit(jobs...)
	return nil
}

func (f *fanout) deadLetter(ctx context.Context, msg *message.Message, cause error) error {
	seq, subject := consume.StreamSeq(msg), msg.Metadata.Get(consume.MetaSubject)
	f.log.WarnContext(ctx, "dead-lettered a message", "stream_seq", seq, "subject", subject, "error", cause)
	return deadletter.Add(ctx, f.pool, deadletter.Letter{Consumer: f.consumer, StreamSeq: seq, Subject: subject, Data: msg.Payload, Error: cause.Error()})
}

// newRouter builds the Watermill router of the fan-out with handlers
// concurrent handlers bound to the pre-provisioned durable.
func newRouter(nc *nats.Conn, f *fanout, handlers int, log *slog.Logger) (*message.Router, *wmjs.Subscriber, error) {
	return consume.NewRouter(nc, consume.Config{Consumer: f.consumer, Name: "webhook-fanout", Handlers: handlers,
		MaxDeliver: f.maxDeliver, Handle: f.handle, DeadLetter: f.deadLetter, Log: log})
}
