package consume_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/consume"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// TestPermanentFailureDeadLetteredAtOnce: a message whose handling fails
// permanently (Postgres refuses its data, or it cannot be decoded) is
// dead-lettered on its first delivery after one call of the handler, not
// retried in process nor redelivered; a transient failure (a serialization
// failure) is retried and never dead-lettered.
func TestPermanentFailureDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	_, err := stream.Ensure(ctx, nc, stream.Config{})
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = consume.Ensure(ctx, js, "permanent", "test", 5, 0)
	require.NoError(t, err)

	type letter struct {
		id, delivered string
		cause         error
	}
	var (
		mu      sync.Mutex
		calls   = map[string]int{}
		handled = map[string]bool{}
	)
	letters := make(chan letter, 10)
	snc := n.Connect(t)
	router, err := consume.NewRouter(snc, consume.Config{Consumer: "permanent", Name: "permanent", Handlers: 4, MaxDeliver: 5,
		Handle: func(msg *message.Message) error {
			ev, err := consume.Event(msg)
			if err != nil {
				return err
			}
			mu.Lock()
			calls[ev.ID]++
			c := calls[ev.ID]
			mu.Unlock()
			switch {
			case ev.ID == "refused":
				return fmt.Errorf("insert 1 events: %w", &pgconn.PgError{Code: "22023", Message: "refused by a trigger"})
			case ev.ID == "conflict" && c <= 2:
				return fmt.Errorf("insert 1 events: %w", &pgconn.PgError{Code: "40001"})
			}
			mu.Lock()
			handled[ev.ID] = true
			mu.Unlock()
			return nil
		},
		DeadLetter: func(_ context.Context, msg *message.Message, cause error) error {
			ev, _ := consume.Event(msg)
			letters <- letter{id: ev.ID, delivered: msg.Metadata.Get(consume.MetaDelivered), cause: cause}
			return nil
		},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- router.Run(runCtx) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })
	<-router.Running()

	pub, err := events.NewPublisher(nc)
	require.NoError(t, err)
	for _, id := range []string{"refused", "conflict", "fine"} {
		_, err := pub.Append(ctx, events.Event{ID: id, Tenant: "acme", Action: "closed",
			Eventable: events.Ref{Type: "card", ID: "c1"}, Creator: events.Ref{Type: "user", ID: "u1"}})
		require.NoError(t, err)
	}
	_, err = js.Publish(ctx, "events.acme.card.closed", []byte(`{"id": "broken", "action": `))
	require.NoError(t, err)

	// With the old rule (dead-letter only the fifth delivery) the first
	// letter came after 1+2+4+8 s of redelivery backoff; the delivery
	// count and the calls below tell the two apart in any case.
	got := map[string]letter{}
	for len(got) < 2 {
		select {
		case l := <-letters:
			got[l.id] = l
		case <-time.After(10 * time.Second):
			t.Fatalf("dead letters after 10s: %+v", got)
		}
	}
	require.Contains(t, got, "refused")
	require.Equal(t, "1", got["refused"].delivered, "dead-lettered on the first delivery")
	require.ErrorContains(t, got["refused"].cause, "refused by a trigger")
	require.Contains(t, got, "", "the undecodable message (no id)")
	require.Equal(t, "1", got[""].delivered)
	require.ErrorContains(t, got[""].cause, "must be a JSON object")

	testenv.Poll(t, 10*time.Second, "the transient failure retried until handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return handled["conflict"] && handled["fine"]
	})
	mu.Lock()
	require.Equal(t, 1, calls["refused"], "no in-process retry of a permanent failure")
	require.Equal(t, 3, calls["conflict"], "two failures, then success")
	mu.Unlock()
	select {
	case l := <-letters:
		t.Fatalf("unexpected dead letter %+v", l)
	default:
	}
}
