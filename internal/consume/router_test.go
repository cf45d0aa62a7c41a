package consume_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/consume"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestRouterStopsWhileMessagesFlow stops a router of busy handlers
// again and again while thousands of messages are pending: Router.Run must
// drain the subscriber's connection before the router closes (closing it
// first panics inside watermill-nats with "send on closed channel", which
// kills the test binary), return nil, and leave every message either
// handled or still pending for the next round.
func TestRouterStopsWhileMessagesFlow(t *testing.T) {
	ctx := context.Background()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	_, err := stream.Ensure(ctx, nc, stream.Config{})
	require.NoError(t, err)
	pub, err := events.NewPublisher(nc)
	require.NoError(t, err)
	// Each round appends 2,000 more events, so every round stops a router
	// with messages flowing.
	appendEvents := func(round int) {
		batch := make([]events.Event, 0, 1000)
		for i := range 2000 {
			batch = append(batch, events.Event{ID: fmt.Sprintf("r%d-e%05d", round, i), Tenant: "acme", Action: "closed",
				Eventable: events.Ref{Type: "card", ID: "c1"}, Creator: events.Ref{Type: "user", ID: "u1"}})
			if len(batch) == cap(batch) {
				_, err := pub.AppendBatch(ctx, batch)
				require.NoError(t, err)
				batch = batch[:0]
			}
		}
	}
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = consume.Ensure(ctx, js, "router-stop", "test", 10, 0)
	require.NoError(t, err)

	var handled atomic.Int64
	var logs lockedBuffer
	for round := range 4 {
		appendEvents(round)
		snc := n.Connect(t)
		router, err := consume.NewRouter(snc, consume.Config{Consumer: "router-stop", Name: "stop", Handlers: 32, MaxDeliver: 10,
			Handle:     func(*message.Message) error { time.Sleep(time.Millisecond); handled.Add(1); return nil },
			DeadLetter: func(context.Context, *message.Message, error) error { return nil },
			Log:        slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		require.NoError(t, err)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- router.Run(runCtx) }()
		// Stop only once this round's handlers are busy: messages flow.
		before := handled.Load()
		testenv.Poll(t, 30*time.Second, "messages handled in this round", func() bool { return handled.Load() > before })
		stop()
		select {
		case err := <-done:
			require.NoError(t, err, "round %d", round)
		case <-time.After(40 * time.Second):
			t.Fatalf("round %d: the router did not stop within 40s", round)
		}
	}
	require.Positive(t, handled.Load())
	require.NotContains(t, logs.String(), "level=ERROR", "a clean stop logs no error")
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestEnsureMaxWaiting: a new durable takes MaxWaiting; one created before
// with the server's default keeps it (the server refuses to change it)
// and Ensure still updates the rest.
func TestEnsureMaxWaiting(t *testing.T) {
	ctx := context.Background()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	_, err := stream.Ensure(ctx, nc, stream.Config{})
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := consume.Ensure(ctx, js, "fresh", "a new durable", 5, 0)
	require.NoError(t, err)
	require.Equal(t, consume.MaxWaiting, c.CachedInfo().Config.MaxWaiting)
	require.Equal(t, 256, consume.Handlers(ctx, log, c, 256))

	_, err = js.CreateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{Durable: "older", AckPolicy: jetstream.AckExplicitPolicy,
		FilterSubject: events.SubjectPrefix + ".>"})
	require.NoError(t, err)
	c, err = consume.Ensure(ctx, js, "older", "updated", 7, 0)
	require.NoError(t, err)
	info := c.CachedInfo().Config
	require.Equal(t, 512, info.MaxWaiting, "the server's default, kept")
	require.Equal(t, 7, info.MaxDeliver, "the rest updated")
	require.Equal(t, "updated", info.Description)
	require.Equal(t, 128, consume.Handlers(ctx, log, c, 256), "a quarter of its waiting pull requests")
	require.Equal(t, 64, consume.Handlers(ctx, log, c, 64))
}
