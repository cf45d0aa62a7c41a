package webhooker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/secretbox"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/pkg/events"
)

// TestAppDeliversEndToEnd runs the webhooker app: create an endpoint over
// its API, append an event, receive the delivery, read the log, stop.
func TestAppDeliversEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	dbURL := testenv.Database(t)
	secretKey, err := secretbox.GenerateKey()
	require.NoError(t, err)
	nc := n.Connect(t) // the admin provisions, as eventline migrate does
	_, err = stream.Ensure(ctx, nc, stream.Config{})
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = EnsureConsumer(ctx, js, DefaultConsumer, 100, 0)
	require.NoError(t, err)
	app := NewApp(AppConfig{HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", NATS: n.Client(natsauth.Webhooker), DatabaseURL: dbURL, SecretKey: secretKey,
		AllowCIDRs: "127.0.0.0/8", Timeout: 5 * time.Second, ShutdownTimeout: 10 * time.Second,
		Service: Config{RefreshEvery: 20 * time.Millisecond}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	select {
	case <-app.Started():
	case err := <-done:
		t.Fatalf("webhooker did not start: %v", err)
	}
	pool, err := postgres.Open(ctx, dbURL)
	require.NoError(t, err)
	defer pool.Close()
	_, key, err := apikey.NewStore(pool, 0).Create(ctx, apikey.CreateParams{Tenant: "acme", Scopes: []string{"admin"}})
	require.NoError(t, err)
	rc := newReceiver(t, nil)

	api := "http://" + app.Addr().String()
	req, _ := http.NewRequest(http.MethodPost, api+"/v1/webhooks", strings.NewReader(fmt.Sprintf(`{"url":%q,"events":["card.closed"]}`, rc.URL)))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var ep map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ep))
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, "%v", ep)

	pub, err := events.NewPublisher(nc)
	require.NoError(t, err)
	// The registry refreshes every 20ms; keep appending until one lands.
	require.Eventually(t, func() bool {
		_, err := pub.Append(ctx, events.Event{Tenant: "acme", Action: "closed", Eventable: events.Ref{Type: "card", ID: "c1"}, Creator: events.Ref{Type: "user", ID: "u1"}})
		require.NoError(t, err)
		return len(rc.all()) > 0
	}, 10*time.Second, 50*time.Millisecond)

	req, _ = http.NewRequest(http.MethodGet, api+"/v1/webhooks/"+ep["id"].(string)+"/deliveries?status=succeeded", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	require.Eventually(t, func() bool {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var out struct{ Deliveries []delivery.Delivery }
		return json.NewDecoder(resp.Body).Decode(&out) == nil && len(out.Deliveries) > 0 && len(out.Deliveries[0].Attempts) == 1
	}, 10*time.Second, 20*time.Millisecond)

	// What the routers have no route for is a problem, as every other error.
	testenv.RequireProblem(t, http.MethodGet, api+"/v1/no-such-thing", http.StatusNotFound, "")
	testenv.RequireProblem(t, http.MethodPut, api+"/v1/webhooks/"+ep["id"].(string), http.StatusMethodNotAllowed, "GET, PATCH, DELETE")
	testenv.RequireProblem(t, http.MethodDelete, api+"/portal", http.StatusMethodNotAllowed, "GET")
	testenv.RequireProblem(t, http.MethodGet, "http://"+app.AdminAddr().String()+"/no-such-thing", http.StatusNotFound, "")
	testenv.RequireProblem(t, http.MethodPost, "http://"+app.AdminAddr().String()+"/metrics", http.StatusMethodNotAllowed, "GET")

	resp, err = http.Get("http://" + app.AdminAddr().String() + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), `eventline_webhook_attempts_total{outcome="success"}`)

	stop()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("webhooker did not stop")
	}
}
