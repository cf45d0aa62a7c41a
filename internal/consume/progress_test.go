package consume_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/consume"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// progressEnv is an embedded NATS with EVENTS, one event in it and a
// durable of the given AckWait.
func progressEnv(t *testing.T, durable string, ackWait time.Duration) (*testenv.NATS, jetstream.Consumer) {
	t.Helper()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	_, err := stream.Ensure(ctx, nc, stream.Config{})
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	cons, err := consume.Ensure(ctx, js, durable, "test", 10, ackWait)
	require.NoError(t, err)
	require.Equal(t, ackWait, cons.CachedInfo().Config.AckWait)
	pub, err := events.NewPublisher(nc)
	require.NoError(t, err)
	_, err = pub.AppendBatch(ctx, []events.Event{{ID: "slow-1", Tenant: "acme", Action: "closed",
		Eventable: events.Ref{Type: "card", ID: "c1"}, Creator: events.Ref{Type: "user", ID: "u1"}}})
	require.NoError(t, err)
	return n, cons
}

func startRouter(t *testing.T, nc *nats.Conn, durable string, handle message.NoPublishHandlerFunc) {
	t.Helper()
	router, err := consume.NewRouter(nc, consume.Config{Consumer: durable, Name: durable, Handlers: 1, MaxDeliver: 10,
		Handle:     handle,
		DeadLetter: func(context.Context, *message.Message, error) error { return nil },
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		require.NoError(t, <-done)
	})
}

// TestSlowHandlerNotRedelivered: a handler that holds its message for
// 3.5 times the durable's AckWait keeps it with in-progress acks: the
// message is delivered once, then acked. Without in-progress acks
// JetStream redelivers it after each AckWait.
func TestSlowHandlerNotRedelivered(t *testing.T) {
	t.Parallel()
	const ackWait = time.Second
	n, cons := progressEnv(t, "slow", ackWait)

	calls := make(chan string, 10)
	startRouter(t, n.Connect(t), "slow", func(msg *message.Message) error {
		calls <- msg.Metadata.Get(consume.MetaDelivered)
		time.Sleep(3*ackWait + ackWait/2)
		return nil
	})
	require.Equal(t, "1", <-calls)
	ctx := context.Background()
	testenv.Poll(t, 10*time.Second, "the message acked", func() bool {
		info, err := cons.Info(ctx)
		require.NoError(t, err)
		return info.AckFloor.Stream == 1
	})
	// Past another AckWait: nothing comes back.
	time.Sleep(ackWait + ackWait/2)
	info, err := cons.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.Delivered.Consumer, "deliveries of the one message")
	require.Zero(t, info.NumRedelivered)
	require.Empty(t, calls)
}

// TestStoppedConsumerRedeliveredAfterAckWait: a replica that dies while
// its handler holds a message (its connection closed, as a SIGKILL does)
// sends no more in-progress acks, and another replica gets the message
// about an AckWait later; while the first was alive, holding it for
// longer than an AckWait, nobody else did.
func TestStoppedConsumerRedeliveredAfterAckWait(t *testing.T) {
	t.Parallel()
	const ackWait = 2 * time.Second
	n, cons := progressEnv(t, "stopped", ackWait)

	held := make(chan struct{})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	dying := n.Connect(t)
	router, err := consume.NewRouter(dying, consume.Config{Consumer: "stopped", Name: "dying", Handlers: 1, MaxDeliver: 10,
		Handle: func(*message.Message) error {
			close(held)
			<-release // a process that is stopped never returns
			return nil
		},
		DeadLetter: func(context.Context, *message.Message, error) error { return nil },
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	go func() { _ = router.Router.Run(context.Background()) }() // watermill's own: no drain, as a process that stops
	<-held

	type delivery struct {
		at        time.Time
		delivered string
	}
	got := make(chan delivery, 10)
	startRouter(t, n.Connect(t), "stopped", func(msg *message.Message) error {
		got <- delivery{time.Now(), msg.Metadata.Get(consume.MetaDelivered)}
		return nil
	})

	// Alive for 1.5 AckWaits while holding it: not redelivered.
	time.Sleep(ackWait + ackWait/2)
	require.Empty(t, got)
	info, err := cons.Info(context.Background())
	require.NoError(t, err)
	require.Zero(t, info.NumRedelivered)

	killed := time.Now()
	dying.Close()
	select {
	case d := <-got:
		after := d.at.Sub(killed)
		t.Logf("redelivered %v after the holder died (AckWait %v)", after.Round(time.Millisecond), ackWait)
		require.Equal(t, "2", d.delivered)
		// The last in-progress ack went out at most AckWait/3 before.
		require.GreaterOrEqual(t, after, ackWait-ackWait/3-200*time.Millisecond)
		require.LessOrEqual(t, after, ackWait+time.Second)
	case <-time.After(3 * ackWait):
		t.Fatal("not redelivered after the holder died")
	}
}

// TestEnsureUpdatesAckWait: provisioning an existing durable again with
// another AckWait changes it; zero is DefaultAckWait.
func TestEnsureUpdatesAckWait(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	_, err := stream.Ensure(ctx, nc, stream.Config{})
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	c, err := consume.Ensure(ctx, js, "ackwait", "test", 5, 0)
	require.NoError(t, err)
	require.Equal(t, consume.DefaultAckWait, c.CachedInfo().Config.AckWait)
	c, err = consume.Ensure(ctx, js, "ackwait", "test", 5, 45*time.Second)
	require.NoError(t, err)
	require.Equal(t, 45*time.Second, c.CachedInfo().Config.AckWait)
	c, err = js.Consumer(ctx, events.StreamName, "ackwait")
	require.NoError(t, err)
	require.Equal(t, 45*time.Second, c.CachedInfo().Config.AckWait, "as the server has it")
}
