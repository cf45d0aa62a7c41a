// Package consume runs Watermill handlers on an eventline durable
// consumer (docs/architecture.md): a watermill-nats subscriber bound to the
// pre-provisioned durable (ExistingConsumer, never created or deleted by
// the library), an unmarshaler that never fails and exposes the stream
// sequence, timestamp, Nats-Msg-Id header and delivery count, and a router
// with recovery, correlation ids, in-process retries of transient failures,
// and dead-lettering of permanent failures at once and of any failure on
// the last delivery.
package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/pkg/events"
)

// Metadata keys the unmarshaler sets on every Watermill message.
const (
	MetaSubject     = "subject"
	MetaStreamSeq   = "stream_seq"
	MetaStreamTime  = "stream_time" // RFC 3339 with nanoseconds
	MetaDelivered   = "delivered"
	MetaTraceparent = "traceparent"
	MetaMsgID       = "nats_msg_id" // the Nats-Msg-Id header; absent when the message has none
)

// Unmarshaler turns a JetStream message into a Watermill message. It
// never fails (the default one can return a nil message, which the
// subscriber then dereferences): problems are left for the handler to
// dead-letter.
type Unmarshaler struct{}

// Unmarshal implements the watermill-nats Unmarshaler.
func (Unmarshaler) Unmarshal(msg jetstream.Msg) (*message.Message, error) {
	h := msg.Headers()
	m := message.NewMessage(h.Get(nats.MsgIdHdr), msg.Data())
	m.Metadata.Set(MetaSubject, msg.Subject())
	m.Metadata.Set(MetaTraceparent, h.Get("traceparent"))
	if ids := h.Values(nats.MsgIdHdr); len(ids) > 0 {
		// More than one is a rejection; keep them all for ParseStored.
		m.Metadata.Set(MetaMsgID, strings.Join(ids, "\n"))
	}
	if meta, err := msg.Metadata(); err == nil {
		m.Metadata.Set(MetaStreamSeq, strconv.FormatUint(meta.Sequence.Stream, 10))
		m.Metadata.Set(MetaStreamTime, meta.Timestamp.UTC().Format(time.RFC3339Nano))
		m.Metadata.Set(MetaDelivered, strconv.FormatUint(meta.NumDelivered, 10))
	}
	return m, nil
}

// StreamSeq is the message's stream sequence (0 when unknown).
func StreamSeq(msg *message.Message) uint64 {
	seq, _ := strconv.ParseUint(msg.Metadata.Get(MetaStreamSeq), 10, 64)
	return seq
}

// StreamTime is when the stream stored the message (zero when unknown).
func StreamTime(msg *message.Message) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, msg.Metadata.Get(MetaStreamTime))
	return t
}

// MsgID is the message's Nats-Msg-Id header ("" when it has none; values
// joined by newlines when it has several).
func MsgID(msg *message.Message) string { return msg.Metadata.Get(MetaMsgID) }

// StreamMessage rebuilds the stream message ParseStored reads.
func StreamMessage(msg *message.Message) events.Message {
	m := events.Message{Subject: msg.Metadata.Get(MetaSubject), Data: msg.Payload, Seq: StreamSeq(msg), Timestamp: StreamTime(msg)}
	if ids := MsgID(msg); ids != "" || msg.Metadata.Get(MetaTraceparent) != "" {
		m.Header = nats.Header{}
		if ids != "" {
			m.Header[events.HeaderMsgID] = strings.Split(ids, "\n")
		}
		if tp := msg.Metadata.Get(MetaTraceparent); tp != "" {
			m.Header.Set("traceparent", tp)
		}
	}
	return m
}

// Event parses a message's stored event (events.ParseStored). Every error
// it returns is a *PermanentError: a wrapped *events.ValidationError is a
// rejection; any other error means the message lacks its stream metadata.
func Event(msg *message.Message) (events.Event, error) {
	ev, err := events.ParseStored(StreamMessage(msg))
	return ev, Permanent(err)
}

// Letter is the dead letter of msg for consumer, with cause as its error.
// When cause is (or wraps) an *events.ValidationError the letter carries
// its field errors, and deadletter.Add records the message as a rejection
// its tenant sees.
func Letter(consumer string, msg *message.Message, cause error) deadletter.Letter {
	return deadletter.Letter{Consumer: consumer, StreamSeq: StreamSeq(msg), Subject: msg.Metadata.Get(MetaSubject),
		Data: msg.Payload, StreamTime: StreamTime(msg), MsgID: MsgID(msg), Error: cause.Error(), Errors: deadletter.FieldErrors(cause)}
}

// PermanentError marks the failure of a message that handling it again
// cannot fix (it cannot be decoded, say): the router dead-letters it at
// once (postgres.Permanent recognises it by its Permanent method).
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent reports true: see postgres.Permanent.
func (e *PermanentError) Permanent() bool { return true }

// Permanent wraps err in a *PermanentError; nil stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// Config describes a router.
type Config struct {
	Consumer   string // the durable, provisioned by the service
	Name       string // handler name prefix
	Handlers   int    // concurrent handlers (one message in flight each)
	MaxDeliver int    // the durable's MaxDeliver: its last delivery is dead-lettered
	// Handle handles one message. An error that postgres.Permanent calls
	// permanent (a data exception, an undecodable message) is
	// dead-lettered at once; any other is retried in process, then the
	// message is redelivered with Backoff until its last delivery.
	Handle message.NoPublishHandlerFunc
	// DeadLetter keeps a message whose handling failed permanently, or on
	// its last delivery; when it succeeds the message is acked.
	DeadLetter func(ctx context.Context, msg *message.Message, cause error) error
	Log        *slog.Logger
	// MaxHold bounds how long a handler's message is kept alive with
	// in-progress acks, every third of the durable's AckWait, while the
	// handler holds it (progress.go). Default MaxHold.
	MaxHold time.Duration
}

// Prefetch is how many messages each handler's subscription asks the
// server for ahead: at most Prefetch-1 wait behind the one a handler
// holds, get no in-progress acks (progress.go) and age towards the
// AckWait meanwhile, so it is small enough that they are taken well
// within DefaultAckWait, and large enough that a busy handler does not
// ask for every message on its own.
const Prefetch = 4

// Router is a Watermill router of handlers bound to one durable, with the
// subscriber it reads through and the connection that subscriber has to
// itself. Run it with Run (the embedded message.Router's own Run neither
// drains nor waits for the handlers on shutdown).
type Router struct {
	*message.Router
	sub      *wmjs.Subscriber
	nc       *nats.Conn
	progress *progress
}

// NewRouter builds the router and its subscriber on nc (a connection of
// its own: closing the subscriber drains it).
func NewRouter(nc *nats.Conn, c Config) (*Router, error) {
	wlog := quietLogger{LoggerAdapter: watermill.NewSlogLoggerWithLevelMapping(c.Log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug}), log: c.Log}
	p := &progress{maxHold: MaxHold}
	if c.MaxHold > 0 {
		p.maxHold = c.MaxHold
	}
	sub, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{
		Conn:   nc,
		Logger: wlog,
		// How long the subscriber waits for a handler's ack or nack before
		// it drops it: the handler's message is kept alive by in-progress
		// acks until then (progress.go), whatever the durable's AckWait.
		AckWaitTimeout:      p.maxHold,
		AckAsync:            true,
		Unmarshaler:         p.unmarshaler(),
		ResourceInitializer: p.consumer(c.Consumer),
		NakDelay:            Backoff{},
		ConsumeOptions:      []jetstream.PullConsumeOpt{jetstream.PullMaxMessages(Prefetch)},
	})
	if err != nil {
		return nil, fmt.Errorf("watermill subscriber: %w", err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, wlog)
	if err != nil {
		return nil, fmt.Errorf("watermill router: %w", err)
	}
	router.AddMiddleware(
		p.middleware, // outermost: covers retries and dead-lettering
		middleware.Recoverer,
		middleware.CorrelationID,
		deadLetterFailed(c.MaxDeliver, c.DeadLetter),
		middleware.Retry{MaxRetries: 3, InitialInterval: 50 * time.Millisecond, Multiplier: 2, Logger: wlog,
			ShouldRetry: func(p middleware.RetryParams) bool { return !postgres.Permanent(p.Err) }}.Middleware,
	)
	for i := range max(1, c.Handlers) {
		router.AddConsumerHandler(fmt.Sprintf("%s-%d", c.Name, i), events.StreamName, drainedSubscriber{sub}, c.Handle)
	}
	return &Router{Router: router, sub: sub, nc: nc, progress: p}, nil
}

// drainedSubscriber is the subscriber as the router sees it. Router.Run
// drains the subscriber's connection before it closes the router, so the
// router's own Close of the subscriber finds the connection closed; that
// is the clean path, not an error to log on every shutdown.
type drainedSubscriber struct{ *wmjs.Subscriber }

func (s drainedSubscriber) Close() error {
	if err := s.Subscriber.Close(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return err
	}
	return nil
}

// deadLetterFailed dead-letters a message whose handling failed
// permanently (postgres.Permanent) at once, and one that still fails on
// its last delivery instead of letting JetStream drop it silently. When
// the dead letter cannot be written, the message is redelivered.
func deadLetterFailed(maxDeliver int, deadLetter func(context.Context, *message.Message, error) error) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err == nil {
				return out, nil
			}
			delivered, _ := strconv.Atoi(msg.Metadata.Get(MetaDelivered))
			if postgres.Permanent(err) || (maxDeliver > 0 && delivered >= maxDeliver) {
				if dlErr := deadLetter(msg.Context(), msg, err); dlErr == nil {
					return nil, nil
				}
			}
			return nil, err
		}
	}
}

// Backoff spaces the redeliveries of a message whose handling failed
// (Postgres down, say): 1 s, 2 s, 4 s ... up to a minute.
type Backoff struct{}

// WaitTime implements the watermill-nats Delay.
func (Backoff) WaitTime(delivered uint64) time.Duration {
	if delivered > 7 {
		return time.Minute
	}
	return min(time.Minute, time.Second<<max(0, int(delivered)-1))
}

// MaxWaiting is how many pull requests a durable created by Ensure holds
// waiting at once. Every Watermill handler is a pull subscription with up
// to two requests outstanding, across every replica of the service: the
// server's default of 512 is reached by one webhooker replica of 256
// handlers, and past it requests are refused and some messages sat
// unhandled until their AckWait. 16,384 covers 8,192 handlers,
// e.g. the 16 webhooker replicas of 256 the KEDA config allows, twice
// over (deploy tests check it).
const MaxWaiting = 16384

// Ensure creates or updates a Watermill-consumed durable on EVENTS:
// explicit acks, ackWait (DefaultAckWait when zero; an existing durable's
// is updated when it differs), maxDeliver deliveries, 10,000 in flight,
// MaxWaiting waiting pull requests. The server cannot change MaxWaiting
// on an existing durable, so one created before keeps its own (see the
// returned consumer's CachedInfo; the README says how to raise it).
func Ensure(ctx context.Context, js jetstream.JetStream, name, description string, maxDeliver int, ackWait time.Duration) (jetstream.Consumer, error) {
	if ackWait <= 0 {
		ackWait = DefaultAckWait
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   description,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    maxDeliver,
		MaxAckPending: 10_000,
		MaxWaiting:    MaxWaiting,
		FilterSubject: events.SubjectPrefix + ".>",
	}
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

// Handlers returns how many handlers a replica may run on cons: at most
// a quarter of the durable's waiting pull requests (two per handler, room
// for a second replica). A durable created before MaxWaiting was set
// holds 512, so a replica runs at most 128 handlers on it; it logs when it
// cuts the number.
func Handlers(ctx context.Context, log *slog.Logger, cons jetstream.Consumer, handlers int) int {
	mw := cons.CachedInfo().Config.MaxWaiting
	if limit := max(1, mw/4); handlers > limit {
		log.WarnContext(ctx, "fewer handlers than configured: the durable holds few waiting pull requests (recreate it to raise them, README, Scaling)",
			"consumer", cons.CachedInfo().Name, "max_waiting", mw, "handlers_configured", handlers, "handlers", limit)
		return limit
	}
	return handlers
}

// quietLogger skips Watermill's per-message info ("got msg"), debug and
// trace lines before their fields are built unless debug logging is on:
// the subscriber logs several per message, which showed in the webhooker's
// CPU profile.
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

// Run runs the router until ctx ends, then stops the flow into it before
// it closes, and closes its subscriber. The router runs on a context of its own: on
// shutdown, once every handler has subscribed, nc (the subscriber's own
// connection) is drained while the handlers still run, so every message
// already delivered is handed over, handled and acked or nacked; only then
// is the router closed. Closing the router with messages still flowing made
// watermill-nats v2.2.0 close its output channel under a consume callback
// blocked sending on it: "panic: send on closed channel", exit status 2 on
// SIGTERM under load (found by the reliability suite). A stop during
// start-up is not an error.
func (r *Router) Run(ctx context.Context) error {
	routerCtx, stopRouter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRouter()
	go func() {
		select {
		case <-ctx.Done():
			select {
			case <-r.Running():
				drain(r.nc)
				// Draining ends when the connection has handed its last
				// message to a subscriber callback, not when that callback
				// has sent it on: wait for the handlers to take and finish
				// what was handed over before the router closes the
				// callbacks' output.
				r.progress.waitIdle(30 * time.Second)
			case <-routerCtx.Done():
			}
		case <-routerCtx.Done():
		}
		_ = r.Close()
	}()
	err := r.Router.Run(routerCtx) // returns once the router is closed and handlers stop
	if ctx.Err() != nil {
		err = nil
	}
	_ = r.sub.Close()
	return err
}

// drain drains nc and waits until it is closed (bounded by the
// connection's DrainTimeout, 30 s by default).
func drain(nc *nats.Conn) {
	if err := nc.Drain(); err != nil {
		return // already closed, or reconnecting: nothing is flowing
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !nc.IsClosed() {
		<-tick.C
	}
}
