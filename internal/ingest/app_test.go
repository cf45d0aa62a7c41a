package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/ingest"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
)

type running struct {
	app  *ingest.App
	url  string
	adm  string
	key  string
	stop context.CancelFunc
	done chan error
}

// provision creates the stream as the NATS admin, as `eventline migrate`
// does: ingest may not.
func provision(t *testing.T, n testenv.NATSServer) {
	t.Helper()
	_, err := stream.Ensure(context.Background(), n.Connect(t), stream.Config{})
	require.NoError(t, err)
}

// startApp runs ingest as its own NATS identity on a provisioned stream.
func startApp(t *testing.T, n testenv.NATSServer, dbURL string) running {
	t.Helper()
	ctx := context.Background()
	provision(t, n)
	pool, err := postgres.Open(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, key, err := apikey.NewStore(pool, 0).Create(ctx, apikey.CreateParams{Tenant: "acme", Scopes: []string{apikey.ScopeIngest}})
	require.NoError(t, err)
	cfg := ingest.Config{
		HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", NATS: n.Client(natsauth.Ingest), DatabaseURL: dbURL,
		Batch: ingest.CommitterConfig{Timeout: 2 * time.Second}, ShutdownTimeout: 10 * time.Second,
	}
	app := ingest.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	select {
	case <-app.Started():
	case err := <-done:
		t.Fatalf("app did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("app did not start within 20s")
	}
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("ingest Run: %v", err)
		}
	})
	return running{app: app, url: "http://" + app.Addr().String(), adm: "http://" + app.AdminAddr().String(), key: key, stop: stop, done: done}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestAppAdminEndpoints(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	r := startApp(t, n, testenv.Database(t))

	code, body := get(t, r.adm+"/livez")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)

	code, body = get(t, r.adm+"/readyz")
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"ready":true,"checks":{"nats":"ok","postgres":"ok","stream":"ok"}}`, body)

	raw, _ := json.Marshal(event("", 1))
	res := post(t, r.url, r.key, "application/json", raw)
	require.Equal(t, http.StatusAccepted, res.status)

	resp, err := http.Get(r.url + "/v1/events")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	require.Equal(t, "POST", resp.Header.Get("Allow"))
	resp, err = http.Get(r.url + "/v2/nothing")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))

	testenv.RequireProblem(t, http.MethodDelete, r.url+"/v1/events", http.StatusMethodNotAllowed, "POST")
	testenv.RequireProblem(t, http.MethodGet, r.adm+"/no-such-thing", http.StatusNotFound, "")
	testenv.RequireProblem(t, http.MethodPost, r.adm+"/livez", http.StatusMethodNotAllowed, "GET")

	code, body = get(t, r.adm+"/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, want := range []string{
		`eventline_ingest_requests_total{code="202"} 1`,
		`eventline_ingest_events_total{outcome="appended"} 1`,
		`eventline_ingest_batch_size_events_count 1`,
		"eventline_ingest_request_duration_seconds_bucket",
		"go_goroutines",
	} {
		require.Contains(t, body, want)
	}

	// NATS goes away: not ready, and ready again once it is back, without
	// restarting ingest.
	n.Shutdown()
	require.Eventually(t, func() bool {
		code, body := get(t, r.adm+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "NATS connection is")
	}, 10*time.Second, 20*time.Millisecond)
	n.Restart(t)
	require.Eventually(t, func() bool { code, _ := get(t, r.adm+"/readyz"); return code == http.StatusOK }, 20*time.Second, 50*time.Millisecond)
	res = post(t, r.url, r.key, "application/json", raw)
	require.Equal(t, http.StatusAccepted, res.status)
}

// TestAppDrainsOnShutdown cancels the app's context (what SIGTERM does)
// under concurrent load: every request answered 202 is in the stream, Run
// returns nil, and the listener is closed.
func TestAppDrainsOnShutdown(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	r := startApp(t, n, testenv.Database(t))

	var (
		mu       sync.Mutex
		accepted = map[string]uint64{}
		sent     atomic.Int64
		wg       sync.WaitGroup
	)
	client := &http.Client{Timeout: 10 * time.Second}
	for c := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("c%d-%d", c, i)
				raw, _ := json.Marshal(event(id, i))
				req, _ := http.NewRequest(http.MethodPost, r.url+"/v1/events", strings.NewReader(string(raw)))
				req.Header.Set("Authorization", "Bearer "+r.key)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					return // the listener is closed: shutdown has begun
				}
				sent.Add(1)
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusAccepted:
					var ok struct{ Events []struct{ Seq uint64 } }
					if json.Unmarshal(body, &ok) != nil || len(ok.Events) != 1 {
						t.Errorf("bad 202 body %s", body)
						return
					}
					mu.Lock()
					accepted[id] = ok.Events[0].Seq
					mu.Unlock()
				case http.StatusServiceUnavailable:
					return // refused during shutdown: not acknowledged
				default:
					t.Errorf("status %d: %s", resp.StatusCode, body)
					return
				}
			}
		}()
	}
	require.Eventually(t, func() bool { return sent.Load() > 200 }, 20*time.Second, 5*time.Millisecond)
	r.stop()
	select {
	case err := <-r.done:
		require.NoError(t, err, "a clean drain returns nil (exit 0)")
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after shutdown")
	}
	r.done <- nil // for the cleanup
	wg.Wait()

	_, err := http.Get(r.url + "/v1/events")
	require.Error(t, err, "the listener is closed")

	nc := n.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	str, err := js.Stream(context.Background(), "EVENTS")
	require.NoError(t, err)
	stored := streamEvents(t, str)
	require.NotEmpty(t, accepted)
	for id, seq := range accepted {
		require.Equal(t, []uint64{seq}, stored[id], "acknowledged event %s", id)
	}
	t.Logf("%d requests acknowledged before shutdown, all stored", len(accepted))
}

func TestAppRefusesOutdatedSchema(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	dbURL := testenv.Database(t)
	pool, err := postgres.Open(context.Background(), dbURL)
	require.NoError(t, err)
	defer pool.Close()
	_, err = pool.Exec(context.Background(), "DELETE FROM eventline.schema_migrations WHERE version = (SELECT max(version) FROM eventline.schema_migrations)")
	require.NoError(t, err)

	app := ingest.New(ingest.Config{HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", NATS: n.Client(natsauth.Ingest), DatabaseURL: dbURL}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	err = app.Run(context.Background())
	require.Error(t, err)
	require.Contains(t, err.Error(), "run `eventline migrate`")
	require.False(t, errors.Is(err, context.Canceled))
}

// TestAppRefusesMissingStream: ingest does not create the stream (its NATS
// identity may not); without it, it refuses to start and says what to run.
func TestAppRefusesMissingStream(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	app := ingest.New(ingest.Config{HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", NATS: n.Client(natsauth.Ingest), DatabaseURL: testenv.Database(t)},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	// Bounded: an ingest that started anyway would serve until cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := app.Run(ctx)
	require.Error(t, err)
	require.Contains(t, err.Error(), "stream EVENTS does not exist")
	require.Contains(t, err.Error(), "eventline migrate")
	js, err := jetstream.New(n.Connect(t))
	require.NoError(t, err)
	_, err = js.Stream(context.Background(), "EVENTS")
	require.ErrorIs(t, err, jetstream.ErrStreamNotFound, "ingest created no stream")
}

// TestAppNotReadyWithoutStream: the stream deleted under a running ingest
// (which then cannot append anything) makes /readyz fail naming it, and
// provisioning it again makes ingest ready and appending again.
func TestAppNotReadyWithoutStream(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	r := startApp(t, n, testenv.Database(t))
	code, body := get(t, r.adm+"/readyz")
	require.Equal(t, http.StatusOK, code, body)

	js, err := jetstream.New(n.Connect(t))
	require.NoError(t, err)
	require.NoError(t, js.DeleteStream(context.Background(), "EVENTS"))
	testenv.Poll(t, 20*time.Second, "/readyz fails naming the missing stream", func() bool {
		code, body := get(t, r.adm+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "stream EVENTS does not exist") && strings.Contains(body, "eventline migrate")
	})
	raw, _ := json.Marshal(event("", 1))
	require.Equal(t, http.StatusServiceUnavailable, post(t, r.url, r.key, "application/json", raw).status)

	provision(t, n)
	testenv.Poll(t, 20*time.Second, "/readyz answers 200 again", func() bool { code, _ := get(t, r.adm+"/readyz"); return code == http.StatusOK })
	require.Equal(t, http.StatusAccepted, post(t, r.url, r.key, "application/json", raw).status)
}
