package projector

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

func TestAppProjectsServesAndStops(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	dbURL := testenv.Database(t)
	nc := n.Connect(t) // the admin provisions, as eventline migrate does
	_, err := stream.Ensure(ctx, nc, stream.Config{})
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = EnsureConsumer(ctx, js, ConsumerConfig{})
	require.NoError(t, err)
	app := NewApp(AppConfig{
		HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", NATS: n.Client(natsauth.Projector), DatabaseURL: dbURL,
		Workers: 2, Batch: 100, MaxLag: time.Minute, LagEvery: 50 * time.Millisecond, ShutdownTimeout: 10 * time.Second,
	}, testLogger())
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	select {
	case <-app.Started():
	case err := <-done:
		t.Fatalf("projector did not start: %v", err)
	}
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("projector Run: %v", err)
		}
	}()

	pool, err := postgres.Open(ctx, dbURL)
	require.NoError(t, err)
	defer pool.Close()
	_, key, err := apikey.NewStore(pool, 0).Create(ctx, apikey.CreateParams{Tenant: "acme", Scopes: []string{"read"}})
	require.NoError(t, err)
	pub, err := events.NewPublisher(nc)
	require.NoError(t, err)
	for i := range 10 {
		_, err := pub.Append(ctx, ev("acme", fmt.Sprintf("e%d", i), "card", "c1", "moved", events.Ref{Type: "board", ID: "b1"}))
		require.NoError(t, err)
	}

	api := "http://" + app.Addr().String()
	require.Eventually(t, func() bool {
		req, _ := http.NewRequest(http.MethodGet, api+"/v1/timelines/board/b1", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && strings.Count(string(body), `"type":"card.moved"`) == 10
	}, 20*time.Second, 20*time.Millisecond)

	// What the router has no route for is a problem, as every other error.
	testenv.RequireProblem(t, http.MethodGet, api+"/v1/no-such-thing", http.StatusNotFound, "")
	testenv.RequireProblem(t, http.MethodPost, api+"/v1/timelines/board/b1", http.StatusMethodNotAllowed, "GET")
	testenv.RequireProblem(t, http.MethodDelete, api+"/v1/activity", http.StatusMethodNotAllowed, "GET")

	admin := "http://" + app.AdminAddr().String()
	testenv.RequireProblem(t, http.MethodGet, admin+"/no-such-thing", http.StatusNotFound, "")
	testenv.RequireProblem(t, http.MethodPost, admin+"/readyz", http.StatusMethodNotAllowed, "GET")
	require.Eventually(t, func() bool {
		resp, err := http.Get(admin + "/readyz")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"lag":"ok"`) && strings.Contains(string(body), `"stream":"ok"`)
	}, 10*time.Second, 20*time.Millisecond)

	// The durable deleted under the running projector: /readyz names it
	// (the projector may not create it again; eventline migrate does).
	require.NoError(t, js.DeleteConsumer(ctx, events.StreamName, DefaultConsumer))
	testenv.Poll(t, 20*time.Second, "/readyz fails naming the missing durable", func() bool {
		resp, err := http.Get(admin + "/readyz")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "durable consumer projector on stream EVENTS does not exist") &&
			strings.Contains(string(body), "eventline migrate")
	})
	resp, err := http.Get(admin + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(metrics), `eventline_projector_events_total{outcome="projected"} 10`)
	require.Contains(t, string(metrics), "eventline_projector_lag_seconds 0")

	stop()
	select {
	case err := <-done:
		require.NoError(t, err)
		done <- nil
	case <-time.After(20 * time.Second):
		t.Fatal("projector did not stop")
	}
}

// TestAppRefusesMissingDurable: the projector does not create its durable
// (its NATS identity may not); without it, it refuses to start and says
// what to run.
func TestAppRefusesMissingDurable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	_, err := stream.Ensure(ctx, n.Connect(t), stream.Config{})
	require.NoError(t, err)
	app := NewApp(AppConfig{HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", NATS: n.Client(natsauth.Projector), DatabaseURL: testenv.Database(t)}, testLogger())
	// Bounded: a projector that started anyway would run until cancelled.
	runCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = app.Run(runCtx)
	require.Error(t, err)
	require.Contains(t, err.Error(), "durable consumer projector on stream EVENTS does not exist")
	require.Contains(t, err.Error(), "eventline migrate")
}
