package webhooker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/openapitest"
	"github.com/eventline/eventline/internal/safehttp"
	"github.com/eventline/eventline/internal/secretbox"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/attempt"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/pkg/events"
)

// clock is a settable fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type bundle struct {
	nats  *testenv.NATS
	pool  *pgxpool.Pool
	js    jetstream.JetStream
	pub   *events.Publisher
	svc   *Service
	clock *clock
	api   string
	key   string
	// secrets is the keyring svc seals endpoint secrets with; another
	// Service over the same database needs it.
	secrets *secretbox.Keyring
}

type options struct {
	allowPrivate bool
	timeout      time.Duration
	cfg          Config
	stream       stream.Config // the EVENTS stream's shape (its de-duplication window)
	// pgConfig changes the service pool's configuration (a counting
	// dialer, say); nil: testenv.Pool.
	pgConfig func(*pgxpool.Config)
}

func setup(t *testing.T, o options) *bundle {
	t.Helper()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	_, err := stream.Ensure(ctx, nc, o.stream)
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	pub, err := events.NewPublisher(nc)
	require.NoError(t, err)
	var pool *pgxpool.Pool
	if o.pgConfig == nil {
		pool = testenv.Pool(t)
	} else {
		pcfg, err := pgxpool.ParseConfig(testenv.Database(t))
		require.NoError(t, err)
		o.pgConfig(pcfg)
		pool, err = pgxpool.NewWithConfig(ctx, pcfg)
		require.NoError(t, err)
		t.Cleanup(pool.Close)
	}
	if o.timeout == 0 {
		o.timeout = 5 * time.Second
	}
	client, err := safehttp.New(safehttp.Config{AllowPrivate: o.allowPrivate, Timeout: o.timeout})
	require.NoError(t, err)
	clk := &clock{t: time.Now()}
	cfg := o.cfg
	cfg.Now = clk.Now
	cfg.Rand = func() float64 { return 0.5 } // no jitter: exact schedule
	cfg.ScheduleEvery = time.Hour            // tests drive the scheduler
	if cfg.RefreshEvery == 0 {
		cfg.RefreshEvery = 20 * time.Millisecond
	}
	cfg.Secrets = testenv.Keyring(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The admin provisions the durable (eventline migrate); the service
	// and its API run as the webhooker's own NATS identity.
	d := cfg.withDefaults()
	_, err = EnsureConsumer(ctx, js, d.Consumer, d.MaxDeliver, 0)
	require.NoError(t, err)
	wnc := n.ConnectAs(t, natsauth.Webhooker)
	wjs, err := jetstream.New(wnc)
	require.NoError(t, err)
	wpub, err := events.NewPublisher(wnc)
	require.NoError(t, err)
	svc, err := NewService(ctx, n.ConnectAs(t, natsauth.Webhooker), wjs, pool, attempt.HTTPPoster{Client: client}, wpub, cfg, NewMetrics(prometheus.NewRegistry()), log)
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })

	keys := apikey.NewStore(pool, 0)
	_, key, err := keys.Create(ctx, apikey.CreateParams{Tenant: "acme", Scopes: []string{apikey.ScopeAdmin}})
	require.NoError(t, err)
	mux := http.NewServeMux()
	NewAPI(svc.Store(), svc.Ledger(), keys, client, wjs, clk.Now, log).Routes(mux)
	srv := httptest.NewServer(openapitest.Check(t, mux))
	t.Cleanup(srv.Close)
	return &bundle{nats: n, pool: pool, js: js, pub: pub, svc: svc, clock: clk, api: srv.URL, key: key, secrets: cfg.Secrets}
}

// call sends a JSON request to the webhook API and decodes the answer.
func (b *bundle) call(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	return request(t, b.api, b.key, method, path, body)
}

// request sends a JSON request with a bearer credential ("" for none) to
// base+path and decodes the JSON answer.
func request(t *testing.T, base, credential, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, base+path, rd)
	require.NoError(t, err)
	if credential != "" {
		req.Header.Set("Authorization", "Bearer "+credential)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &out), "%s", raw)
	}
	return resp.StatusCode, out
}

// createEndpoint registers url for patterns and waits until the service's
// registry has it.
func (b *bundle) createEndpoint(t *testing.T, body map[string]any) (id, secret string) {
	t.Helper()
	code, out := b.call(t, http.MethodPost, "/v1/webhooks", body)
	require.Equal(t, http.StatusCreated, code, "%v", out)
	id, secret = out["id"].(string), out["secret"].(string)
	require.Eventually(t, func() bool { _, ok := b.svc.registry.Get(id); return ok }, 5*time.Second, 5*time.Millisecond)
	return id, secret
}

func (b *bundle) publish(t *testing.T, id string) events.Event {
	t.Helper()
	e := events.Event{ID: id, Tenant: "acme", Action: "closed", Eventable: events.Ref{Type: "card", ID: "c42"},
		Creator: events.Ref{Type: "user", ID: "u7"}, Parents: []events.Ref{{Type: "board", ID: "b1"}}, Particulars: json.RawMessage(`{"column":"Done"}`)}
	res, err := b.pub.Append(context.Background(), e)
	require.NoError(t, err)
	require.NoError(t, e.Normalize(time.Now()))
	e.Seq = res.Seq
	return e
}

// deliveries returns the endpoint's delivery log.
func (b *bundle) deliveries(t *testing.T, endpointID string) []delivery.Delivery {
	t.Helper()
	ds, err := b.svc.Ledger().List(context.Background(), "acme", endpointID, "", "", 200)
	require.NoError(t, err)
	return ds
}

// waitAttempts waits until the endpoint's deliveries have n attempts in all.
func (b *bundle) waitAttempts(t *testing.T, endpointID string, n int) []delivery.Delivery {
	t.Helper()
	var ds []delivery.Delivery
	require.Eventually(t, func() bool {
		ds = b.deliveries(t, endpointID)
		total := 0
		for _, d := range ds {
			total += len(d.Attempts)
		}
		return total >= n
	}, 10*time.Second, 10*time.Millisecond, "want %d attempts", n)
	return ds
}

// receiver is a real local HTTP receiver whose answers the test scripts.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests []received
	answer   func(n int, w http.ResponseWriter, r *http.Request)
	got      chan struct{}
}

type received struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{answer: answer, got: make(chan struct{}, 1000)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.requests = append(rc.requests, received{header: r.Header.Clone(), body: body})
		n := len(rc.requests)
		rc.mu.Unlock()
		if rc.answer != nil {
			rc.answer(n, w, r)
		}
		rc.got <- struct{}{}
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.requests...)
}

// waitFannedOut waits until the fan-out has handled every event up to the
// stream sequence seq: its durable's ack floor reached seq and nothing is
// pending.
func (b *bundle) waitFannedOut(t *testing.T, seq uint64) {
	t.Helper()
	ctx := context.Background()
	cons, err := b.js.Consumer(ctx, events.StreamName, DefaultConsumer)
	require.NoError(t, err)
	testenv.Poll(t, 10*time.Second, fmt.Sprintf("the fan-out past seq %d", seq), func() bool {
		ci, err := cons.Info(ctx)
		require.NoError(t, err)
		return ci.AckFloor.Stream >= seq && ci.NumAckPending == 0
	})
}
