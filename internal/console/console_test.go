package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/console"
	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/projector"
	"github.com/eventline/eventline/internal/secretbox"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
	"github.com/eventline/eventline/pkg/events"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const token = "operator-token-for-tests-0123456789"

type bundle struct {
	url   string
	js    jetstream.JetStream
	pub   *events.Publisher
	clock *testenv.Clock
	pool  *pgxpool.Pool
}

// setup runs a console over a fresh database and NATS server with the
// stream and the projector's durable, showing the readiness of one fake
// service that is ready and one that is not.
func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	_, err := stream.Ensure(ctx, nc, stream.Config{})
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = projector.EnsureConsumer(ctx, js, projector.ConsumerConfig{Name: projector.DefaultConsumer})
	require.NoError(t, err)
	pub, err := events.NewPublisher(nc)
	require.NoError(t, err)
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down/readyz" {
			http.Error(w, "postgres: connection refused", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	}))
	t.Cleanup(ready.Close)
	clk := testenv.NewClock(time.Now())
	pool := testenv.Pool(t)
	c, err := console.New(console.Config{Pool: pool, JS: js, OperatorToken: token, Now: clk.Now,
		Services: []console.Service{{Name: "projector", ReadyURL: ready.URL + "/up/readyz"}, {Name: "notifier", ReadyURL: ready.URL + "/down/readyz"}}})
	require.NoError(t, err)
	mux := http.NewServeMux()
	c.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &bundle{url: srv.URL, js: js, pub: pub, clock: clk, pool: pool}
}

// client is a browser-like client: it keeps cookies.
func client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar}
}

func do(t *testing.T, c *http.Client, method, url, contentType, bearer string, body any) (*http.Response, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && strings.Contains(resp.Header.Get("Content-Type"), "json") {
		require.NoError(t, json.Unmarshal(raw, &out), "%s", raw)
	}
	return resp, out
}

const jsonType = "application/json"

// The console admits the operator token only (at login, or as a bearer
// for scripts), keeps the login in a signed HttpOnly SameSite=Strict
// cookie that expires, and refuses changes not sent as JSON.
func TestConsoleAuth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	browser := client(t)
	overview := b.url + "/console/api/overview"

	resp, _ := do(t, browser, http.MethodGet, overview, "", "", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = do(t, browser, http.MethodPost, b.url+"/console/api/login", jsonType, "", map[string]string{"token": token + "x"})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = do(t, browser, http.MethodPost, b.url+"/console/api/login", "application/x-www-form-urlencoded", "", map[string]string{"token": token})
	require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
	// An API key, even an admin one, is not an operator credential.
	resp, _ = do(t, browser, http.MethodGet, overview, "", "el_abcdefghijklmnop_secret", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	resp, _ = do(t, browser, http.MethodPost, b.url+"/console/api/login", jsonType, "", map[string]string{"token": token})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == console.Cookie {
			session = c
		}
	}
	require.NotNil(t, session)
	require.True(t, session.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, session.SameSite)
	require.Equal(t, "/console", session.Path)
	require.NotContains(t, session.Value, token)

	resp, out := do(t, browser, http.MethodGet, overview, "", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%v", out)

	// A tampered cookie is refused.
	forged := client(t)
	forged.Jar.SetCookies(mustURL(t, b.url+"/console"), []*http.Cookie{{Name: console.Cookie, Value: session.Value[:len(session.Value)-2] + "AA", Path: "/console"}})
	resp, _ = do(t, forged, http.MethodGet, overview, "", "", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	// Scripts send the token itself.
	resp, _ = do(t, http.DefaultClient, http.MethodGet, overview, "", token, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = do(t, http.DefaultClient, http.MethodGet, overview, "", token[:len(token)-1], nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	// A change must be JSON, even with a valid session.
	resp, _ = do(t, browser, http.MethodPost, b.url+"/console/api/dead-letters/replay", "text/plain", "", map[string]any{"consumer": "projector", "seq": 1})
	require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)

	// The session ends after its lifetime.
	b.clock.Add(console.DefaultSession + time.Second)
	resp, _ = do(t, browser, http.MethodGet, overview, "", "", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	// The page itself is public, and may not be framed.
	resp, _ = do(t, http.DefaultClient, http.MethodGet, b.url+"/console", "", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")

	_, err := console.New(console.Config{Pool: b.pool, JS: b.js, OperatorToken: "short"})
	require.ErrorContains(t, err, "at least 24")
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

// The overview shows the stream, each durable's lag and dead letters, and
// every service's readiness; a dead letter replayed from the console
// reaches the read model and leaves the list; the lag returns to zero
// once the durable has acknowledged what it was behind on.
func TestConsoleOverviewAndReplay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	ev := events.Event{ID: "e1", Tenant: "acme", Action: "closed", Eventable: events.Ref{Type: "card", ID: "c1"}, Creator: events.Ref{Type: "user", ID: "u1"}}
	res, err := b.pub.Append(ctx, ev)
	require.NoError(t, err)

	o := overview(t, b)
	require.Equal(t, float64(res.Seq), o["stream"].(map[string]any)["last_seq"])
	proj := consumer(t, o, projector.DefaultConsumer)
	require.Equal(t, float64(1), proj["pending"])
	services := o["services"].([]any)
	require.Equal(t, true, services[0].(map[string]any)["ready"])
	require.Equal(t, false, services[1].(map[string]any)["ready"])
	require.Contains(t, services[1].(map[string]any)["detail"], "connection refused")

	// The projector dead-letters the message (as it does when Postgres
	// refuses it) and acknowledges it: the lag is back to zero, a dead
	// letter is pending.
	cons, err := b.js.Consumer(ctx, events.StreamName, projector.DefaultConsumer)
	require.NoError(t, err)
	msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	for m := range msgs.Messages() {
		md, err := m.Metadata()
		require.NoError(t, err)
		require.NoError(t, deadletter.Add(ctx, b.pool, deadletter.Letter{Consumer: projector.DefaultConsumer, StreamSeq: md.Sequence.Stream,
			Subject: m.Subject(), Data: m.Data(), StreamTime: md.Timestamp, Error: "timeline: value too long for the column (SQLSTATE 22001)"}))
		require.NoError(t, m.Ack())
	}
	testenv.Poll(t, 5*time.Second, "the lag back to zero", func() bool { return consumer(t, overview(t, b), projector.DefaultConsumer)["pending"] == float64(0) })
	require.Equal(t, float64(1), consumer(t, overview(t, b), projector.DefaultConsumer)["dead_letters"])

	resp, out := do(t, http.DefaultClient, http.MethodGet, b.url+"/console/api/dead-letters", "", token, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	letters := out["dead_letters"].([]any)
	require.Len(t, letters, 1)
	l := letters[0].(map[string]any)
	require.Equal(t, "acme", l["tenant"])
	require.Contains(t, l["reason"], "22001")
	require.Contains(t, l["body"], `"action":"closed"`)

	resp, out = do(t, http.DefaultClient, http.MethodPost, b.url+"/console/api/dead-letters/replay", jsonType, token, map[string]any{"consumer": "projector", "seq": res.Seq})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%v", out)
	require.Equal(t, true, out["replayed"], "%v", out)
	resp, out = do(t, http.DefaultClient, http.MethodGet, b.url+"/console/api/dead-letters", "", token, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Empty(t, out["dead_letters"])
	require.Equal(t, float64(0), consumer(t, overview(t, b), projector.DefaultConsumer)["dead_letters"])

	// The replayed event is in the tenant's timeline.
	resp, out = do(t, http.DefaultClient, http.MethodGet, b.url+"/console/api/timeline?tenant=acme&type=card&id=c1", "", token, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%v", out)
	require.Len(t, out["events"], 1)
	require.Equal(t, "e1", out["events"].([]any)[0].(map[string]any)["id"])

	// Unknown consumers and sequences are refused by name.
	resp, _ = do(t, http.DefaultClient, http.MethodPost, b.url+"/console/api/dead-letters/replay", jsonType, token, map[string]any{"consumer": "projecter", "seq": res.Seq})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	resp, _ = do(t, http.DefaultClient, http.MethodPost, b.url+"/console/api/dead-letters/replay", jsonType, token, map[string]any{"consumer": "projector", "seq": 999})
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func overview(t *testing.T, b *bundle) map[string]any {
	t.Helper()
	resp, out := do(t, http.DefaultClient, http.MethodGet, b.url+"/console/api/overview", "", token, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%v", out)
	require.Empty(t, out["stream_error"])
	return out
}

func consumer(t *testing.T, o map[string]any, name string) map[string]any {
	t.Helper()
	for _, c := range o["consumers"].([]any) {
		if c.(map[string]any)["name"] == name {
			return c.(map[string]any)
		}
	}
	t.Fatalf("no consumer %s in %v", name, o["consumers"])
	return nil
}

// The endpoints page shows every tenant's endpoints with their health over
// the last day, the delivery log lists deliveries across tenants with
// their last answer and filters them, and rejected events are counted
// and listed per tenant.
func TestConsoleEndpointsDeliveriesRejections(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	key, err := secretbox.GenerateKey()
	require.NoError(t, err)
	keys, err := secretbox.NewKeyring(key)
	require.NoError(t, err)
	store := endpoint.NewStore(b.pool, keys)
	healthy, err := store.CreateEndpoint(ctx, endpoint.Endpoint{Tenant: "acme", URL: "https://a.example/hook", Events: []string{"*"}, Format: "json"}, "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	require.NoError(t, err)
	failing, err := store.CreateEndpoint(ctx, endpoint.Endpoint{Tenant: "globex", URL: "https://g.example/hook", Events: []string{"card.*"}, Format: "json"}, "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	require.NoError(t, err)
	_, err = b.pool.Exec(ctx, `UPDATE webhook.endpoints SET consecutive_failures = 3, failing_since = now() WHERE id = $1`, failing.ID)
	require.NoError(t, err)
	delivery := func(ep endpoint.Endpoint, status string, code int, errText string) string {
		id := uuid.Must(uuid.NewV7()).String()
		_, err := b.pool.Exec(ctx, `INSERT INTO webhook.deliveries (id, tenant, endpoint_id, event_id, event_seq, event_type, status, attempts, last_attempt_at)
			VALUES ($1, $2, $3, $1, 1, 'card.closed', $4, 1, now())`, id, ep.Tenant, ep.ID, status)
		require.NoError(t, err)
		_, err = b.pool.Exec(ctx, `INSERT INTO webhook.attempts (delivery_id, n, tenant, endpoint_id, at, duration_ms, status_code, error_class, error)
			VALUES ($1, 1, $2, $3, now(), 12, nullif($4, 0), nullif($5, ''), nullif($5, ''))`, id, ep.Tenant, ep.ID, code, errText)
		require.NoError(t, err)
		return id
	}
	delivery(healthy, "succeeded", 200, "")
	delivery(healthy, "succeeded", 204, "")
	failed := delivery(failing, "failed", 0, "timeout")

	get := func(path string) map[string]any {
		resp, out := do(t, http.DefaultClient, http.MethodGet, b.url+path, "", token, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %v", path, out)
		return out
	}
	eps := get("/console/api/endpoints")["endpoints"].([]any)
	require.Len(t, eps, 2)
	byID := map[string]map[string]any{}
	for _, e := range eps {
		byID[e.(map[string]any)["id"].(string)] = e.(map[string]any)
	}
	require.Equal(t, "healthy", byID[healthy.ID]["health"])
	require.Equal(t, float64(2), byID[healthy.ID]["succeeded_24h"])
	require.Equal(t, "failing", byID[failing.ID]["health"])
	require.Equal(t, float64(1), byID[failing.ID]["failed_24h"])
	require.Len(t, get("/console/api/endpoints?tenant=globex")["endpoints"], 1)

	ds := get("/console/api/deliveries")["deliveries"].([]any)
	require.Len(t, ds, 3)
	require.Equal(t, failed, ds[0].(map[string]any)["id"], "newest first")
	require.Equal(t, "timeout", ds[0].(map[string]any)["last_error"])
	require.Equal(t, "https://g.example/hook", ds[0].(map[string]any)["url"])
	require.Equal(t, float64(204), ds[1].(map[string]any)["last_status_code"])
	require.Len(t, get("/console/api/deliveries?status=failed")["deliveries"], 1)
	require.Len(t, get("/console/api/deliveries?tenant=acme")["deliveries"], 2)
	require.Len(t, get("/console/api/deliveries?endpoint=" + healthy.ID)["deliveries"], 2)
	resp, _ := do(t, http.DefaultClient, http.MethodGet, b.url+"/console/api/deliveries?status=lost", "", token, nil)
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)

	// A message on globex's subjects without an action is a rejection.
	require.NoError(t, deadletter.Add(ctx, b.pool, deadletter.Letter{Consumer: projector.DefaultConsumer, StreamSeq: 7, Subject: "events.globex.card.closed",
		Data: []byte(`{"eventable":{"type":"card","id":"c1"}}`), StreamTime: time.Now(), Error: "rejected",
		Errors: []events.FieldError{{Field: "action", Message: "is required"}}}))
	counts := overview(t, b)["rejected"].([]any)
	require.Len(t, counts, 1)
	require.Equal(t, "globex", counts[0].(map[string]any)["tenant"])
	require.Equal(t, float64(1), counts[0].(map[string]any)["pending"])
	rs := get("/console/api/rejected?tenant=globex")["rejected_events"].([]any)
	require.Len(t, rs, 1)
	require.Contains(t, rs[0].(map[string]any)["body"], `"eventable"`)
	require.Empty(t, get("/console/api/rejected?tenant=acme")["rejected_events"])
	require.ElementsMatch(t, []any{"acme", "globex"}, get("/console/api/tenants")["tenants"])
}
