package notifier

import (
	"context"
	"log/slog"
	"time"

	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
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
	"github.com/eventline/eventline/pkg/events"
)

// DefaultConsumer is the notifier's durable name.
const DefaultConsumer = "notifier"

// EnsureConsumer creates or updates the notifier's durable consumer.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, name string, maxDeliver int) (jetstream.Consumer, error) {
	return consume.Ensure(ctx, js, name, "eventline notifier: recipients, watches, inbox and digests", maxDeliver)
}

// handler applies one message. Concurrent handlers' messages are
// group-committed: one transaction writes several messages' effects, and
// each message is acked only after that transaction commits.
type handler struct {
	pool       *pgxpool.Pool
	commits    *groupcommit.Batcher[*events.Event, error]
	consumer   string
	maxDeliver int
	log        *slog.Logger
	metrics    *Metrics
	tracer     trace.Tracer
}

func (h *handler) handle(msg *message.Message) error {
	ctx := msg.Context()
	ev, err := consume.Event(msg)
	if err != nil {
		return h.deadLetter(ctx, msg, err)
	}
	// The span joins the event's trace: from the handler's start to the
	// commit of the inbox transaction that carries this event.
	ctx, span := h.tracer.Start(observe.WithTraceparent(ctx, ev.Traceparent), "notifier notify", trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("eventline.event.id", ev.ID), attribute.String("eventline.tenant", ev.Tenant),
			attribute.Int64("messaging.nats.stream_sequence", int64(consume.StreamSeq(msg))))
	}
	itemErr, err := h.commits.Submit(ctx, &ev)
	if err == nil {
		err = itemErr
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return err // an error is retried, then nacked for redelivery
}

func (h *handler) deadLetter(ctx context.Context, msg *message.Message, cause error) error {
	seq, subject := consume.StreamSeq(msg), msg.Metadata.Get(consume.MetaSubject)
	h.log.WarnContext(ctx, "dead-lettered a message", "stream_seq", seq, "subject", subject, "error", cause)
	if err := deadletter.Add(ctx, h.pool, consume.Letter(h.consumer, msg, cause)); err != nil {
		return err
	}
	h.metrics.event("dead_lettered", 1)
	return nil
}

// newCommits returns the group commit of inbox writes. A batch the
// database refuses is retried message by message, so one bad message
// fails alone.
func newCommits(w *writer, m *Metrics, maxBatch int) *groupcommit.Batcher[*events.Event, error] {
	return groupcommit.New(func(ctx context.Context, evs []*events.Event) ([]error, error) {
		out := make([]error, len(evs))
		res, err := w.apply(ctx, append([]*events.Event(nil), evs...))
		if err == nil {
			m.applied(res)
			return out, nil
		}
		if len(evs) == 1 {
			out[0] = err
			return out, nil
		}
		for i, e := range evs {
			res, err := w.apply(ctx, []*events.Event{e})
			out[i] = err
			if err == nil {
				m.applied(res)
			}
		}
		return out, nil
	}, nil, groupcommit.Config{MaxBatch: maxBatch, MaxInflight: 2, Linger: 2 * time.Millisecond})
}

// newRouter builds the notifier's Watermill router (see package consume)
// with handlers concurrent handlers.
func newRouter(nc *nats.Conn, h *handler, handlers int, log *slog.Logger) (*message.Router, *wmjs.Subscriber, error) {
	return consume.NewRouter(nc, consume.Config{Consumer: h.consumer, Name: "notifier", Handlers: handlers,
		MaxDeliver: h.maxDeliver, Handle: h.handle, DeadLetter: h.deadLetter, Log: log})
}

// ReplayDeadLetter applies a dead-lettered message again (`eventline dlq
// replay --consumer notifier`). It returns the reason the letter is still
// poison (recorded on the letter), or an error reaching the database.
func ReplayDeadLetter(ctx context.Context, pool *pgxpool.Pool, l deadletter.Letter) (poison, err error) {
	e, poison, err := deadletter.Event(ctx, pool, l)
	if err != nil || poison != nil {
		return poison, err
	}
	w := &writer{pool: pool, now: time.Now}
	_, err = w.applyWith(ctx, []*events.Event{&e}, func(tx pgx.Tx) error {
		return deadletter.MarkReplayed(ctx, tx, l.Consumer, l.StreamSeq)
	})
	return nil, err
}
