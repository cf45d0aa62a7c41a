package notifier

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/groupcommit"
	"github.com/eventline/eventline/pkg/events"
)

// DefaultConsumer is the notifier's durable name.
const DefaultConsumer = "notifier"

// Metadata keys the unmarshaler sets on every Watermill message.
const (
	metaSubject   = "subject"
	metaStreamSeq = "stream_seq"
	metaDelivered = "delivered"
)

// unmarshaler turns a JetStream message into a Watermill message and
// never fails (the default one can return a nil message, which the
// subscriber then dereferences): problems are left for the handler to
// dead-letter.
type unmarshaler struct{}

func (unmarshaler) Unmarshal(msg jetstream.Msg) (*message.Message, error) {
	m := message.NewMessage(msg.Headers().Get(nats.MsgIdHdr), msg.Data())
	m.Metadata.Set(metaSubject, msg.Subject())
	if meta, err := msg.Metadata(); err == nil {
		m.Metadata.Set(metaStreamSeq, strconv.FormatUint(meta.Sequence.Stream, 10))
		m.Metadata.Set(metaDelivered, strconv.FormatUint(meta.NumDelivered, 10))
	}
	return m, nil
}

// EnsureConsumer creates or updates the notifier's durable consumer.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, name string, maxDeliver int) (jetstream.Consumer, error) {
	cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "eventline notifier: recipients, watches, inbox and digests",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    maxDeliver,
		MaxAckPending: 10_000,
		FilterSubject: events.SubjectPrefix + ".>",
	})
	if err != nil {
		return nil, fmt.Errorf("create or update consumer %s: %w", name, err)
	}
	return cons, nil
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
}

func (h *handler) handle(msg *message.Message) error {
	ctx := msg.Context()
	seq, _ := strconv.ParseUint(msg.Metadata.Get(metaStreamSeq), 10, 64)
	ev, err := events.ParseStored(msg.Metadata.Get(metaSubject), msg.Payload, seq)
	if err != nil || seq == 0 {
		if err == nil {
			err = fmt.Errorf("message without stream metadata")
		}
		return h.deadLetter(ctx, msg, err)
	}
	itemErr, err := h.commits.Submit(ctx, &ev)
	if err != nil {
		return err // retried, then nacked for redelivery
	}
	return itemErr
}

func (h *handler) deadLetter(ctx context.Context, msg *message.Message, cause error) error {
	seq, _ := strconv.ParseUint(msg.Metadata.Get(metaStreamSeq), 10, 64)
	h.log.WarnContext(ctx, "dead-lettered a message", "stream_seq", seq, "subject", msg.Metadata.Get(metaSubject), "error", cause)
	if err := deadletter.Add(ctx, h.pool, deadletter.Letter{Consumer: h.consumer, StreamSeq: seq, Subject: msg.Metadata.Get(metaSubject), Data: msg.Payload, Error: cause.Error()}); err != nil {
		return err
	}
	h.metrics.event("dead_lettered", 1)
	return nil
}

// lastDelivery dead-letters a message whose handling still fails on its
// last delivery, instead of letting JetStream drop it silently.
func (h *handler) lastDelivery(next message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := next(msg)
		if err == nil {
			return out, nil
		}
		delivered, _ := strconv.Atoi(msg.Metadata.Get(metaDelivered))
		if h.maxDeliver > 0 && delivered >= h.maxDeliver {
			if dlErr := h.deadLetter(msg.Context(), msg, err); dlErr == nil {
				return nil, nil
			}
		}
		return nil, err
	}
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

// newRouter builds the Watermill router: recovery, correlation ids,
// dead-lettering on the last delivery, in-process retries, and handlers
// concurrent handlers bound to the pre-provisioned durable.
func newRouter(nc *nats.Conn, h *handler, handlers int, log *slog.Logger) (*message.Router, *wmjs.Subscriber, error) {
	wlog := watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	sub, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{
		Conn:           nc,
		Logger:         wlog,
		AckWaitTimeout: 30 * time.Second,
		AckAsync:       true,
		Unmarshaler:    unmarshaler{},
		ResourceInitializer: wmjs.ExistingConsumer(func(string, string) jetstream.ConsumerConfig {
			return jetstream.ConsumerConfig{Name: h.consumer}
		}, ""),
		NakDelay:       backoffDelay{},
		ConsumeOptions: []jetstream.PullConsumeOpt{jetstream.PullMaxMessages(32)},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("watermill subscriber: %w", err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, wlog)
	if err != nil {
		return nil, nil, fmt.Errorf("watermill router: %w", err)
	}
	router.AddMiddleware(
		middleware.Recoverer,
		middleware.CorrelationID,
		h.lastDelivery,
		middleware.Retry{MaxRetries: 3, InitialInterval: 50 * time.Millisecond, Multiplier: 2, Logger: wlog}.Middleware,
	)
	for i := range max(1, handlers) {
		router.AddConsumerHandler(fmt.Sprintf("notifier-%d", i), events.StreamName, sub, h.handle)
	}
	return router, sub, nil
}

// backoffDelay spaces redeliveries of a message whose handling failed: 1 s,
// 2 s, 4 s ... up to a minute.
type backoffDelay struct{}

// WaitTime implements the watermill-nats Delay.
func (backoffDelay) WaitTime(delivered uint64) time.Duration {
	if delivered > 7 {
		return time.Minute
	}
	return min(time.Minute, time.Second<<max(0, int(delivered)-1))
}
