package webhooker

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

// newInserts returns the group commit of delivery inserts.
func newInserts(pool *pgxpool.Pool, now func() time.Time, claim time.Duration) *groupcommit.Batcher[fanoutItem, []job] {
	return groupcommit.New(func(ctx context.Context, items []fanoutItem) ([][]job, error) {
		return insertDeliveries(ctx, pool, items, now().Add(claim))
	}, func(it fanoutItem) int { return len(it.endpoints) }, groupcommit.Config{MaxBatch: 5000, MaxInflight: 2})
}

// DefaultConsumer is the durable name of the fan-out.
const DefaultConsumer = "webhooker"

// Metadata keys the unmarshaler sets on every Watermill message.
const (
	metaSubject     = "subject"
	metaStreamSeq   = "stream_seq"
	metaDelivered   = "delivered"
	metaTraceparent = "traceparent"
)

// unmarshaler turns a JetStream message into a Watermill message. It never
// fails (the default one can return a nil message, which the subscriber
// then dereferences): problems are left for the handler to dead-letter.
type unmarshaler struct{}

func (unmarshaler) Unmarshal(msg jetstream.Msg) (*message.Message, error) {
	m := message.NewMessage(msg.Headers().Get(nats.MsgIdHdr), msg.Data())
	m.Metadata.Set(metaSubject, msg.Subject())
	m.Metadata.Set(metaTraceparent, msg.Headers().Get("traceparent"))
	if meta, err := msg.Metadata(); err == nil {
		m.Metadata.Set(metaStreamSeq, strconv.FormatUint(meta.Sequence.Stream, 10))
		m.Metadata.Set(metaDelivered, strconv.FormatUint(meta.NumDelivered, 10))
	}
	return m, nil
}

// EnsureConsumer creates or updates the fan-out's durable consumer.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, name string, maxDeliver int) (jetstream.Consumer, error) {
	cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "eventline webhooker: fan-out of EVENTS to webhook endpoints",
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
}

func (f *fanout) handle(msg *message.Message) error {
	ctx := msg.Context()
	seq, _ := strconv.ParseUint(msg.Metadata.Get(metaStreamSeq), 10, 64)
	subject := msg.Metadata.Get(metaSubject)
	ev, err := events.ParseStored(subject, msg.Payload, seq)
	if err != nil || seq == 0 {
		if err == nil {
			err = fmt.Errorf("message without stream metadata")
		}
		return f.deadLetter(ctx, msg, err)
	}
	ev.Traceparent = msg.Metadata.Get(metaTraceparent)
	eps := f.registry.Match(ev)
	if len(eps) == 0 {
		return nil
	}
	// MarshalJSON writes compact JSON already: json.Marshal would only
	// validate and compact it a second time.
	body, err := ev.MarshalJSON()
	if err != nil {
		return f.deadLetter(ctx, msg, fmt.Errorf("encode delivery body: %w", err))
	}
	jobs, err := f.inserts.Submit(ctx, fanoutItem{event: ev, endpoints: eps, body: body})
	if err != nil {
		return err // retried, then nacked for redelivery
	}
	f.metrics.created(len(jobs))
	f.submit(jobs...)
	return nil
}

func (f *fanout) deadLetter(ctx context.Context, msg *message.Message, cause error) error {
	seq, _ := strconv.ParseUint(msg.Metadata.Get(metaStreamSeq), 10, 64)
	f.log.WarnContext(ctx, "dead-lettered a message", "stream_seq", seq, "subject", msg.Metadata.Get(metaSubject), "error", cause)
	return deadletter.Add(ctx, f.pool, deadletter.Letter{Consumer: f.consumer, StreamSeq: seq, Subject: msg.Metadata.Get(metaSubject), Data: msg.Payload, Error: cause.Error()})
}

// lastDelivery dead-letters a message whose handling still fails on its
// last delivery, instead of letting JetStream drop it silently.
func (f *fanout) lastDelivery(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if err == nil {
			return out, nil
		}
		delivered, _ := strconv.Atoi(msg.Metadata.Get(metaDelivered))
		if f.maxDeliver > 0 && delivered >= f.maxDeliver {
			if dlErr := f.deadLetter(msg.Context(), msg, err); dlErr == nil {
				return nil, nil
			}
		}
		return nil, err
	}
}

// newRouter builds the Watermill router of the fan-out: recovery,
// correlation ids, in-process retries, dead-lettering on the last delivery,
// and handlers concurrent handlers bound to the pre-provisioned durable.
func newRouter(nc *nats.Conn, f *fanout, handlers int, log *slog.Logger) (*message.Router, *wmjs.Subscriber, error) {
	wlog := quietLogger{LoggerAdapter: watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug}), log: log}
	sub, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{
		Conn:           nc,
		Logger:         wlog,
		AckWaitTimeout: 30 * time.Second,
		AckAsync:       true,
		Unmarshaler:    unmarshaler{},
		ResourceInitializer: wmjs.ExistingConsumer(func(string, string) jetstream.ConsumerConfig {
			return jetstream.ConsumerConfig{Name: f.consumer}
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
		f.lastDelivery,
		middleware.Retry{MaxRetries: 3, InitialInterval: 50 * time.Millisecond, Multiplier: 2, Logger: wlog}.Middleware,
	)
	for i := range max(1, handlers) {
		router.AddConsumerHandler(fmt.Sprintf("webhook-fanout-%d", i), events.StreamName, sub, f.handle)
	}
	return router, sub, nil
}

// quietLogger skips Watermill's per-message info ("got msg"), debug and
// trace lines before their fields are built unless debug logging is on: the
// subscriber logs several per message.
type quietLogger struct {
	watermill.LoggerAdapter
	log *slog.Logger
}

func (q quietLogger) on() bool { return q.log.Enabled(context.Background(), slog.LevelDebug) }

// Info implements watermill.LoggerAdapter; Watermill's info is our debug.
func (q quietLogger) Info(msg string, fields watermill.LogFields) {
	if q.on() {
		q.LoggerAdapter.Info(msg, fields)
	}
}

// Debug implements watermill.LoggerAdapter.
func (q quietLogger) Debug(msg string, fields watermill.LogFields) {
	if q.on() {
		q.LoggerAdapter.Debug(msg, fields)
	}
}

// Trace implements watermill.LoggerAdapter.
func (q quietLogger) Trace(msg string, fields watermill.LogFields) {
	if q.on() {
		q.LoggerAdapter.Trace(msg, fields)
	}
}

// With implements watermill.LoggerAdapter.
func (q quietLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return quietLogger{LoggerAdapter: q.LoggerAdapter.With(fields), log: q.log}
}

// backoffDelay spaces the redeliveries of an event whose fan-out failed
// (Postgres down, say): 1 s, 2 s, 4 s ... up to a minute, so the default 100
// deliveries ride out an outage of more than an hour before dead-lettering.
type backoffDelay struct{}

// WaitTime implements the watermill-nats Delay.
func (backoffDelay) WaitTime(delivered uint64) time.Duration {
	if delivered > 7 {
		return time.Minute
	}
	return min(time.Minute, time.Second<<max(0, int(delivered)-1))
}
