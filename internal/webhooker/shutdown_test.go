package webhooker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/safehttp"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/attempt"
	"github.com/eventline/eventline/pkg/events"
)

// TestStopWhileMessagesFlow stops the service four times while the
// fan-out has a backlog, so that Watermill's consume callbacks are blocked
// handing messages to busy handlers when it stops. Run must return nil
// every time. (Closing the router first made watermill-nats close its
// output channel under such a callback: "panic: send on closed channel",
// exit status 2 on SIGTERM under load — found by the reliability suite.)
//
// Not parallel: it loads the machine, and other tests here have deadlines.
func TestStopWhileMessagesFlow(t *testing.T) {
	b := setup(t, options{allowPrivate: true})
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(rc.Close)
	b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"*"}})
	ctx := context.Background()
	// Each round appends 1,500 more events, so every round stops a
	// fan-out with messages flowing.
	appendEvents := func(round int) {
		batch := make([]events.Event, 0, 500)
		for i := range 1500 {
			batch = append(batch, events.Event{ID: fmt.Sprintf("flow-%d-%05d", round, i), Tenant: "acme", Action: "closed",
				Eventable: events.Ref{Type: "card", ID: "c1"}, Creator: events.Ref{Type: "user", ID: "u1"}})
			if len(batch) == cap(batch) {
				_, err := b.pub.AppendBatch(ctx, batch)
				require.NoError(t, err)
				batch = batch[:0]
			}
		}
	}
	client, err := safehttp.New(safehttp.Config{AllowPrivate: true, Timeout: 5 * time.Second})
	require.NoError(t, err)
	// A durable of its own, provisioned by the admin; the service runs with
	// the admin's connections (the webhooker's identity reads only its own
	// durable).
	_, err = EnsureConsumer(ctx, b.js, "webhooker-stop", 100, 0)
	require.NoError(t, err)
	for round := range 4 {
		appendEvents(round)
		svc, err := NewService(ctx, b.nats.Connect(t), b.js, b.pool, attempt.HTTPPoster{Client: client}, b.pub,
			Config{Consumer: "webhooker-stop", RefreshEvery: 20 * time.Millisecond, ScheduleEvery: time.Hour, Secrets: b.secrets},
			NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
		require.NoError(t, err)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- svc.Run(runCtx) }()
		// Stop once the fan-out holds messages: delivered to its handlers
		// and not acked yet.
		testenv.Poll(t, 30*time.Second, "the fan-out holds messages", func() bool {
			c, err := b.js.Consumer(ctx, events.StreamName, "webhooker-stop")
			if err != nil {
				return false // not created yet
			}
			ci, err := c.Info(ctx)
			require.NoError(t, err)
			return ci.NumAckPending > 0
		})
		stop()
		select {
		case err := <-done:
			require.NoError(t, err, "round %d", round)
		case <-time.After(40 * time.Second):
			t.Fatalf("round %d: Run did not return after its context ended", round)
		}
	}
}
