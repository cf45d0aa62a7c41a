package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/ingest"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/openapitest"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

type bundle struct {
	nats     *testenv.NATS
	str      jetstream.Stream
	url      string
	key      string // tenant acme, scope ingest
	readKey  string // tenant acme, scope read
	slowKey  string // tenant acme, ingest, 10 events/s
	otherKey string // tenant globex, ingest
	// mk creates a key (rate 0: the service default, unlimited here).
	mk func(tenant string, scopes []string, rate int) string
}

func setup(t *testing.T) bundle { t.Helper(); return setupWith(t, stream.Config{}, nil) }

// setupWith provisions the stream with sc and lets configure change the
// service's configuration (and see the test database's pool).
func setupWith(t *testing.T, sc stream.Config, configure func(*ingest.Config, *pgxpool.Pool)) bundle {
	t.Helper()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	str, err := stream.Ensure(ctx, nc, sc)
	require.NoError(t, err)
	pub, err := events.NewPublisher(n.ConnectAs(t, natsauth.Ingest), events.WithTimeout(2*time.Second))
	require.NoError(t, err)
	pool := testenv.Pool(t)
	keys := apikey.NewStore(pool, 0)
	mk := func(tenant string, scopes []string, rate int) string {
		_, plain, err := keys.Create(ctx, apikey.CreateParams{Tenant: tenant, Scopes: scopes, RateLimit: rate})
		require.NoError(t, err)
		return plain
	}
	cfg := ingest.Config{RateLimit: 0, Batch: ingest.CommitterConfig{Timeout: 2 * time.Second}}
	if configure != nil {
		configure(&cfg, pool)
	}
	svc := ingest.NewService(pub, keys, cfg, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	go svc.Run(context.Background())
	t.Cleanup(func() { svc.Close(); <-svc.Done() })
	mux := http.NewServeMux()
	svc.Routes(mux)
	srv := httptest.NewServer(openapitest.Check(t, mux))
	t.Cleanup(srv.Close)
	return bundle{
		nats: n, str: str, url: srv.URL,
		key:      mk("acme", []string{apikey.ScopeIngest}, 0),
		readKey:  mk("acme", []string{apikey.ScopeRead}, 0),
		slowKey:  mk("acme", []string{apikey.ScopeIngest}, 10),
		otherKey: mk("globex", []string{apikey.ScopeIngest}, 0),
		mk:       mk,
	}
}

type response struct {
	status  int
	header  http.Header
	results []events.Result
	problem map[string]any
}

func post(t *testing.T, url, key, contentType string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/v1/events", bytes.NewReader(body))
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := response{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode == http.StatusAccepted {
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		var ok struct{ Events []events.Result }
		require.NoError(t, json.Unmarshal(raw, &ok), "%s", raw)
		r.results = ok.Events
	} else {
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), "%d %s", resp.StatusCode, raw)
		require.NoError(t, json.Unmarshal(raw, &r.problem), "%s", raw)
		require.EqualValues(t, resp.StatusCode, r.problem["status"])
		require.NotEmpty(t, r.problem["title"])
		require.NotEmpty(t, r.problem["detail"])
		require.NotEmpty(t, r.problem["type"])
	}
	return r
}

func postJSON(t *testing.T, b bundle, key string, body any) response {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	return post(t, b.url, key, "application/json", raw)
}

func event(id string, n int) map[string]any {
	e := map[string]any{
		"action":      "closed",
		"eventable":   map[string]string{"type": "card", "id": fmt.Sprintf("c%d", n)},
		"creator":     map[string]string{"type": "user", "id": "u7"},
		"parents":     []map[string]string{{"type": "board", "id": "b1"}},
		"particulars": map[string]any{"n": n},
	}
	if id != "" {
		e["id"] = id
	}
	return e
}

func batch(es ...map[string]any) map[string]any { return map[string]any{"events": es} }

// streamEvents reads every stored event, by id, with its seq.
func streamEvents(t *testing.T, str jetstream.Stream) map[string][]uint64 {
	t.Helper()
	ctx := context.Background()
	info, err := str.Info(ctx)
	require.NoError(t, err)
	out := map[string][]uint64{}
	if info.State.Msgs == 0 {
		return out
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := str.GetMsg(ctx, seq)
		require.NoError(t, err)
		var e events.Event
		require.NoError(t, json.Unmarshal(m.Data, &e))
		out[e.ID] = append(out[e.ID], seq)
	}
	return out
}

func TestIngestOneEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	raw, _ := json.Marshal(event("", 1))
	req, err := http.NewRequest(http.MethodPost, b.url+"/v1/events", bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+b.key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", traceparent)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var r response
	r.status = resp.StatusCode
	var body struct{ Events []events.Result }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	resp.Body.Close()
	r.results = body.Events
	require.Equal(t, http.StatusAccepted, r.status)
	require.Len(t, r.results, 1)
	require.NotEmpty(t, r.results[0].ID)
	require.Equal(t, uint64(1), r.results[0].Seq)
	require.False(t, r.results[0].Duplicate)

	m, err := b.str.GetMsg(context.Background(), 1)
	require.NoError(t, err)
	require.Equal(t, "events.acme.card.closed", m.Subject)
	require.Equal(t, traceparent, m.Header.Get("traceparent"), "the request's trace context travels in the NATS header")
	var fields map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(m.Data, &fields))
	for _, system := range []string{"recorded_at", "type", "seq"} {
		require.NotContains(t, fields, system, "the stream body is the HTTP input form")
	}
	e, err := events.ParseStored(events.Message{Subject: m.Subject, Data: m.Data, Header: m.Header, Seq: m.Sequence, Timestamp: m.Time})
	require.NoError(t, err)
	require.Equal(t, r.results[0].ID, e.ID)
	require.Equal(t, "acme", e.Tenant, "the tenant comes from the key")
	require.Equal(t, "card.closed", e.Type)
	require.Equal(t, m.Time.UTC().Truncate(time.Microsecond), e.RecordedAt)
	require.WithinDuration(t, e.RecordedAt, e.OccurredAt, time.Second, "ingest filled occurred_at in")
}

func TestIngestBatchOf1000(t *testing.T) {
	t.Parallel()
	b := setup(t)
	es := make([]map[string]any, 1000)
	for i := range es {
		es[i] = event(fmt.Sprintf("e%04d", i), i)
	}
	r := postJSON(t, b, b.key, batch(es...))
	require.Equal(t, http.StatusAccepted, r.status)
	require.Len(t, r.results, 1000)
	seen := map[uint64]bool{}
	for i, res := range r.results {
		require.Equal(t, fmt.Sprintf("e%04d", i), res.ID, "input order")
		require.False(t, seen[res.Seq], "distinct seqs")
		seen[res.Seq] = true
		if i > 0 {
			require.Equal(t, r.results[i-1].Seq+1, res.Seq, "one atomic batch is contiguous")
		}
	}
	stored := streamEvents(t, b.str)
	require.Len(t, stored, 1000)
	for _, res := range r.results {
		require.Equal(t, []uint64{res.Seq}, stored[res.ID])
	}
}

func TestIngest64ConcurrentClients(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const clients, perClient = 64, 20
	var mu sync.Mutex
	got := map[string]uint64{}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				id := fmt.Sprintf("c%d-%d", c, i)
				r := postJSON(t, b, b.key, event(id, i))
				if r.status != http.StatusAccepted || len(r.results) != 1 || r.results[0].ID != id {
					t.Errorf("client %d request %d: %d %+v %v", c, i, r.status, r.results, r.problem)
					return
				}
				mu.Lock()
				got[id] = r.results[0].Seq
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, got, clients*perClient)
	stored := streamEvents(t, b.str)
	require.Len(t, stored, clients*perClient)
	seqs := map[uint64]string{}
	for id, seq := range got {
		require.Equal(t, []uint64{seq}, stored[id], "event %s is stored once, at the seq it was given", id)
		require.Empty(t, seqs[seq], "seq %d given to two events", seq)
		seqs[seq] = id
	}
}

func TestIngestResendIsDuplicate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := postJSON(t, b, b.key, event("order-1", 1))
	require.Equal(t, http.StatusAccepted, first.status)
	again := postJSON(t, b, b.key, event("order-1", 1))
	require.Equal(t, http.StatusAccepted, again.status)
	require.True(t, again.results[0].Duplicate)
	require.Equal(t, first.results[0].Seq, again.results[0].Seq)

	other := postJSON(t, b, b.otherKey, event("order-1", 1))
	require.Equal(t, http.StatusAccepted, other.status)
	require.False(t, other.results[0].Duplicate, "another tenant's order-1 is another event")
	require.Len(t, streamEvents(t, b.str)["order-1"], 2)
}

func TestIngestBatchMixingNewAndStored(t *testing.T) {
	t.Parallel()
	b := setup(t)
	old := postJSON(t, b, b.key, batch(event("a", 1), event("b", 2)))
	require.Equal(t, http.StatusAccepted, old.status)
	r := postJSON(t, b, b.key, batch(event("x", 3), event("b", 2), event("y", 4), event("a", 1), event("", 5)))
	require.Equal(t, http.StatusAccepted, r.status)
	require.Len(t, r.results, 5)
	want := []struct {
		id  string
		dup bool
		seq uint64
	}{{"x", false, 0}, {"b", true, old.results[1].Seq}, {"y", false, 0}, {"a", true, old.results[0].Seq}, {"", false, 0}}
	for i, w := range want {
		require.Equal(t, w.dup, r.results[i].Duplicate, "event %d", i)
		if w.id != "" {
			require.Equal(t, w.id, r.results[i].ID)
		}
		if w.dup {
			require.Equal(t, w.seq, r.results[i].Seq)
		}
	}
	stored := streamEvents(t, b.str)
	require.Len(t, stored, 5, "a, b, x, y and the id-less event, each once")
	for _, ids := range stored {
		require.Len(t, ids, 1)
	}
}

func fieldsOf(t *testing.T, problem map[string]any) []string {
	t.Helper()
	errs, _ := problem["errors"].([]any)
	var out []string
	for _, e := range errs {
		m := e.(map[string]any)
		require.NotEmpty(t, m["message"])
		out = append(out, fmt.Sprintf("%v:%v", m["index"], m["field"]))
	}
	return out
}

// notEventBodies are bodies that are not events or batches, with the
// "index:field" of their one error.
var notEventBodies = map[string]string{
	`[1,2]`:                         "0:body",
	`{"events": []}`:                "0:events",
	`{"events": {}}`:                "0:events",
	`{"events": [], "action": "x"}`: "0:body",
	`{"action":`:                    "0:body",
}

func TestIngestErrors(t *testing.T) {
	t.Parallel()
	// The clock stands still: requests of the rate-limit checks are all
	// within the same instant, however slow the machine.
	at := time.Now()
	b := setupWith(t, stream.Config{}, func(c *ingest.Config, _ *pgxpool.Pool) { c.Now = func() time.Time { return at } })
	valid, _ := json.Marshal(event("", 1))

	t.Run("401 without key", func(t *testing.T) {
		r := post(t, b.url, "", "application/json", valid)
		require.Equal(t, http.StatusUnauthorized, r.status)
		require.Contains(t, r.header.Get("WWW-Authenticate"), "Bearer")
	})
	t.Run("401 with a wrong key", func(t *testing.T) {
		r := post(t, b.url, b.key[:len(b.key)-2]+"xx", "application/json", valid)
		require.Equal(t, http.StatusUnauthorized, r.status)
		r = post(t, b.url, "not-a-key", "application/json", valid)
		require.Equal(t, http.StatusUnauthorized, r.status)
	})
	t.Run("403 without ingest scope", func(t *testing.T) {
		r := post(t, b.url, b.readKey, "application/json", valid)
		require.Equal(t, http.StatusForbidden, r.status)
		require.Contains(t, r.problem["detail"], "ingest")
	})
	t.Run("413 above 1 MiB", func(t *testing.T) {
		big := bytes.Repeat([]byte(" "), 1<<20)
		big = append(big, valid...)
		r := post(t, b.url, b.key, "application/json", big)
		require.Equal(t, http.StatusRequestEntityTooLarge, r.status)
	})
	t.Run("415 for a non-JSON content type", func(t *testing.T) {
		for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded"} {
			r := post(t, b.url, b.key, ct, valid)
			require.Equal(t, http.StatusUnsupportedMediaType, r.status, ct)
		}
		r := post(t, b.url, b.key, "application/json; charset=utf-8", valid)
		require.Equal(t, http.StatusAccepted, r.status)
	})
	t.Run("422 names every field and appends nothing", func(t *testing.T) {
		before := len(streamEvents(t, b.str))
		bad := event("", 2)
		bad["action"] = "Closed!"
		bad["seq"] = 9
		worse := event("", 3)
		delete(worse, "creator")
		worse["tenant"] = "globex"
		r := postJSON(t, b, b.key, batch(event("", 1), bad, worse))
		require.Equal(t, http.StatusUnprocessableEntity, r.status)
		require.ElementsMatch(t, []string{"1:action", "1:seq", "2:tenant", "2:creator.type", "2:creator.id"}, fieldsOf(t, r.problem))
		require.Len(t, streamEvents(t, b.str), before, "nothing appended")
	})
	t.Run("422 for bodies that are not events", func(t *testing.T) {
		for body, field := range notEventBodies {
			r := post(t, b.url, b.key, "application/json", []byte(body))
			require.Equal(t, http.StatusUnprocessableEntity, r.status, body)
			require.Equal(t, []string{field}, fieldsOf(t, r.problem), body)
		}
		many := make([]map[string]any, 1001)
		for i := range many {
			many[i] = map[string]any{}
		}
		r := postJSON(t, b, b.key, batch(many...))
		require.Equal(t, http.StatusUnprocessableEntity, r.status)
		require.Equal(t, []string{"0:events"}, fieldsOf(t, r.problem))
	})
	t.Run("422 for an id repeated in one request", func(t *testing.T) {
		r := postJSON(t, b, b.key, batch(event("same", 1), event("same", 2)))
		require.Equal(t, http.StatusUnprocessableEntity, r.status)
		require.Equal(t, []string{"1:id"}, fieldsOf(t, r.problem))
	})
	t.Run("429 over the key's rate limit", func(t *testing.T) {
		// slowKey: 10 events/s, so a burst of 10.
		es := make([]map[string]any, 11)
		for i := range es {
			es[i] = event("", i)
		}
		r := postJSON(t, b, b.slowKey, batch(es...))
		require.Equal(t, http.StatusTooManyRequests, r.status, "a batch of 11 is larger than the burst of 10")
		require.Empty(t, r.header.Get("Retry-After"), "retrying a batch larger than the burst cannot help")
		require.Contains(t, r.problem["detail"], "split it into requests of at most 10 events")
		r = postJSON(t, b, b.slowKey, batch(es[:10]...))
		require.Equal(t, http.StatusAccepted, r.status, "the burst: ten events at once")

		// A key of 1 event/s: a second event within the second waits.
		oneKey := b.mk("acme", []string{apikey.ScopeIngest}, 1)
		first, second := postJSON(t, b, oneKey, event("", 1)), postJSON(t, b, oneKey, event("", 2))
		require.Equal(t, http.StatusAccepted, first.status)
		require.Equal(t, http.StatusTooManyRequests, second.status, "a second event within the second")
		require.NotEmpty(t, second.header.Get("Retry-After"))
		r = postJSON(t, b, b.key, event("", 1))
		require.Equal(t, http.StatusAccepted, r.status, "other keys are not limited")
	})
	t.Run("invalid requests count against the rate limit", func(t *testing.T) {
		bad := event("", 1)
		bad["action"] = "Closed!"
		oneKey := b.mk("acme", []string{apikey.ScopeIngest}, 1)
		first, second := postJSON(t, b, oneKey, bad), postJSON(t, b, oneKey, bad)
		require.Equal(t, http.StatusUnprocessableEntity, first.status, "the first invalid request is within the limit")
		require.Equal(t, http.StatusTooManyRequests, second.status, "a second invalid request within the second is over it")

		otherKey := b.mk("acme", []string{apikey.ScopeIngest}, 1)
		first, second = post(t, b.url, otherKey, "text/plain", []byte("x")), postJSON(t, b, otherKey, event("", 1))
		require.Equal(t, http.StatusUnsupportedMediaType, first.status)
		require.Equal(t, http.StatusTooManyRequests, second.status, "the request with a wrong content type took the key's budget")
	})
}

func TestIngestUnavailableWhenNATSIsDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.nats.Shutdown()
	raw, _ := json.Marshal(event("", 1))
	r := post(t, b.url, b.key, "application/json", raw)
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.NotEmpty(t, r.header.Get("Retry-After"))
	require.True(t, strings.Contains(fmt.Sprint(r.problem["detail"]), "Retry"))
}

// TestForeignDuplicateIsNotTrusted: a producer may set any Nats-Msg-Id, so
// another tenant's message can hold acme's id within the stream's window.
// ingest does not answer acme "duplicate" with globex's message: it appends
// acme's event, and a re-send finds that one.
func TestForeignDuplicateIsNotTrusted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	admin := b.nats.Connect(t)
	js, err := jetstream.New(admin)
	require.NoError(t, err)
	forged := nats.NewMsg("events.globex.card.closed")
	forged.Header.Set(events.HeaderMsgID, "acme:stolen-1")
	forged.Data = []byte(`{"id":"stolen-1","action":"closed","eventable":{"type":"card","id":"x"},"creator":{"type":"user","id":"mallory"}}`)
	foreign, err := js.PublishMsg(context.Background(), forged)
	require.NoError(t, err)

	r := postJSON(t, b, b.key, event("stolen-1", 1))
	require.Equal(t, http.StatusAccepted, r.status)
	require.False(t, r.results[0].Duplicate, "globex's message is not acme's event")
	require.NotEqual(t, foreign.Sequence, r.results[0].Seq)
	again := postJSON(t, b, b.key, event("stolen-1", 1))
	require.True(t, again.results[0].Duplicate, "a re-send finds acme's own append")
	require.Equal(t, r.results[0].Seq, again.results[0].Seq)

	batch2 := postJSON(t, b, b.key, batch(event("stolen-1", 1), event("fresh-2", 2)))
	require.Equal(t, http.StatusAccepted, batch2.status)
	require.Equal(t, r.results[0].Seq, batch2.results[0].Seq, "in a batch too")
	require.True(t, batch2.results[0].Duplicate)

	msg, err := b.str.GetMsg(context.Background(), r.results[0].Seq)
	require.NoError(t, err)
	require.Equal(t, "events.acme.card.closed", msg.Subject)
}
