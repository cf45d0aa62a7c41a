package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/browser"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/openapitest"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

type bundle struct {
	nats    *testenv.NATS
	nc      *nats.Conn
	js      jetstream.JetStream
	cons    jetstream.Consumer
	pool    *pgxpool.Pool
	pub     *events.Publisher
	store   *Store
	metrics *Metrics
	log     *slog.Logger
	api     string
	keys    map[string]string // tenant -> read key
}

func setup(t *testing.T, cc ConsumerConfig) *bundle {
	t.Helper()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	_, err := stream.Ensure(ctx, nc, stream.Config{})
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = EnsureConsumer(ctx, js, cc) // provisioning: the admin
	require.NoError(t, err)
	// The workers read as the projector's own NATS identity.
	pjs, err := jetstream.New(n.ConnectAs(t, natsauth.Projector))
	require.NoError(t, err)
	cons, err := stream.LookupDurable(ctx, pjs, cc.withDefaults().Name)
	require.NoError(t, err)
	pub, err := events.NewPublisher(nc)
	require.NoError(t, err)
	pool := testenv.Pool(t)
	b := &bundle{nats: n, nc: nc, js: js, cons: cons, pool: pool, pub: pub, store: NewStore(pool),
		metrics: NewMetrics(prometheus.NewRegistry()), log: slog.New(slog.NewTextHandler(io.Discard, nil)), keys: map[string]string{}}
	keys := apikey.NewStore(pool, 0)
	for _, tenant := range []string{"acme", "globex"} {
		_, k, err := keys.Create(ctx, apikey.CreateParams{Tenant: tenant, Scopes: []string{apikey.ScopeRead}})
		require.NoError(t, err)
		b.keys[tenant] = k
	}
	_, ingestOnly, err := keys.Create(ctx, apikey.CreateParams{Tenant: "acme", Scopes: []string{apikey.ScopeIngest}})
	require.NoError(t, err)
	b.keys["acme-ingest-only"] = ingestOnly
	mux := http.NewServeMux()
	api := NewAPI(b.store, keys, b.log)
	guard, _, err := browser.Setup(pool, keys, tokenSecret, b.log)
	require.NoError(t, err)
	api.guard = guard
	api.Routes(mux)
	srv := httptest.NewServer(openapitest.Check(t, mux))
	t.Cleanup(srv.Close)
	b.api = srv.URL
	return b
}

// worker starts one projector worker until the test ends or stop is called.
func (b *bundle) worker(t *testing.T, cfg Config, hook func(string, int) error) (stop func()) {
	t.Helper()
	p := New(b.cons, b.pool, cfg, b.metrics, b.log)
	p.hook = hook
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.Run(ctx); err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func ev(tenant, id, typ, objID, action string, parents ...events.Ref) events.Event {
	return events.Event{ID: id, Tenant: tenant, Action: action, Eventable: events.Ref{Type: typ, ID: objID},
		Creator: events.Ref{Type: "user", ID: "u7"}, Parents: parents, Particulars: json.RawMessage(`{"k":"v"}`)}
}

// count returns the number of stored events and timeline entries.
func (b *bundle) count(t *testing.T) (int, int) {
	t.Helper()
	var n, m int
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM timeline_g1.events), (SELECT count(*) FROM timeline_g1.entries)`).Scan(&n, &m))
	return n, m
}

func (b *bundle) waitEvents(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool { got, _ := b.count(t); return got >= n }, 20*time.Second, 10*time.Millisecond, "want %d events projected", n)
}

type pageResp struct {
	status int
	page   struct {
		Events     []events.Event `json:"events"`
		NextCursor *string        `json:"next_cursor"`
	}
	problem map[string]any
}

func (b *bundle) get(t *testing.T, key, path string, params url.Values) pageResp {
	t.Helper()
	var r pageResp
	r.status, r.problem = b.getJSON(t, key, path, params, &r.page)
	return r
}

// getJSON GETs path with key, decodes a 200 answer into ok and returns the
// status and, for any other, the problem.
func (b *bundle) getJSON(t *testing.T, key, path string, params url.Values, ok any) (int, map[string]any) {
	t.Helper()
	u := b.api + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.Unmarshal(raw, ok), "%s", raw)
		return resp.StatusCode, nil
	}
	var problem map[string]any
	require.NoError(t, json.Unmarshal(raw, &problem), "%s", raw)
	return resp.StatusCode, problem
}

func ids(es []events.Event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func TestProjectsTimelinesAndServesThem(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	b.worker(t, Config{}, nil)
	ctx := context.Background()
	board := events.Ref{Type: "board", ID: "b1"}
	card := events.Ref{Type: "card", ID: "c42"}
	in := []events.Event{
		ev("acme", "e1", "board", "b1", "created"),
		ev("acme", "e2", "card", "c42", "published", board),
		ev("acme", "e3", "comment", "m1", "created", card, board),
		ev("acme", "e4", "card", "c42", "closed", board),
		ev("acme", "e5", "card", "c43", "published", events.Ref{Type: "board", ID: "b2"}),
		ev("globex", "e1", "card", "c42", "published", board), // same ids, other tenant
	}
	in[3].Creator = events.Ref{Type: "user", ID: "u8"}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i := range in {
		in[i].OccurredAt = base.Add(time.Duration(i) * time.Minute)
	}
	res, err := b.pub.AppendBatch(ctx, in)
	require.NoError(t, err)
	b.waitEvents(t, len(in))

	acme := b.keys["acme"]
	r := b.get(t, acme, "/v1/timelines/board/b1", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, []string{"e4", "e3", "e2", "e1"}, ids(r.page.Events), "the board's own events and its cards' and comments', newest first")
	require.Nil(t, r.page.NextCursor)
	e4 := r.page.Events[0]
	require.Equal(t, res[3].Seq, e4.Seq)
	require.Equal(t, "card.closed", e4.Type)
	require.Equal(t, "acme", e4.Tenant)
	require.Equal(t, []events.Ref{board}, e4.Parents)
	require.JSONEq(t, `{"k":"v"}`, string(e4.Particulars))
	require.Equal(t, in[3].OccurredAt.UTC(), e4.OccurredAt)
	require.False(t, e4.RecordedAt.IsZero())

	r = b.get(t, acme, "/v1/timelines/card/c42", nil)
	require.Equal(t, []string{"e4", "e3", "e2"}, ids(r.page.Events))

	r = b.get(t, acme, "/v1/activity", nil)
	require.Equal(t, []string{"e5", "e4", "e3", "e2", "e1"}, ids(r.page.Events))

	for _, tc := range []struct {
		path   string
		params url.Values
		want   []string
	}{
		{"/v1/activity", url.Values{"action": {"published"}}, []string{"e5", "e2"}},
		{"/v1/activity", url.Values{"action": {"card.closed,created"}}, []string{"e4", "e3", "e1"}},
		{"/v1/activity", url.Values{"action": {"card.published,card.closed"}}, []string{"e5", "e4", "e2"}},
		{"/v1/activity", url.Values{"creator": {"user:u8"}}, []string{"e4"}},
		{"/v1/activity", url.Values{"eventable_type": {"comment"}}, []string{"e3"}},
		{"/v1/activity", url.Values{"since": {base.Add(time.Minute).Format(time.RFC3339)}, "until": {base.Add(3 * time.Minute).Format(time.RFC3339)}}, []string{"e3", "e2"}},
		{"/v1/timelines/board/b1", url.Values{"action": {"closed"}, "creator": {"user:u8"}}, []string{"e4"}},
		{"/v1/timelines/board/b1", url.Values{"eventable_type": {"card"}, "limit": {"1"}}, []string{"e4"}},
		{"/v1/timelines/board/none", nil, []string{}},
	} {
		r := b.get(t, acme, tc.path, tc.params)
		require.Equal(t, http.StatusOK, r.status, "%s %v", tc.path, tc.params)
		require.Equal(t, tc.want, ids(r.page.Events), "%s %v", tc.path, tc.params)
	}

	r = b.get(t, acme, "/v1/events/e3", nil)
	require.Equal(t, http.StatusOK, r.status)
	r = b.get(t, acme, "/v1/events/nope", nil)
	require.Equal(t, http.StatusNotFound, r.status)
}

// crashAfterFirstCommit returns a worker hook that stops the worker after
// its first commit, before the acks, as a crash would, and a channel
// closed then.
func crashAfterFirstCommit() (func(string, int) error, <-chan struct{}) {
	crashed := make(chan struct{})
	var once sync.Once
	return func(stage string, _ int) error {
		if stage != "after_commit" {
			return nil
		}
		var crash bool
		once.Do(func() { crash = true; close(crashed) })
		if crash {
			return fmt.Errorf("simulated crash between commit and ack")
		}
		return nil
	}, crashed
}

// TestExactlyOnceUnderRedelivery crashes a worker between commit and ack:
// the batch is redelivered and projected again, and nothing is doubled.
func TestExactlyOnceUnderRedelivery(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{AckWait: time.Second})
	ctx := context.Background()
	const n = 300
	in := make([]events.Event, n)
	for i := range in {
		in[i] = ev("acme", fmt.Sprintf("e%d", i), "card", fmt.Sprintf("c%d", i%7), "moved", events.Ref{Type: "board", ID: "b1"})
	}
	_, err := b.pub.AppendBatch(ctx, in)
	require.NoError(t, err)

	hook, crashed := crashAfterFirstCommit()
	stop := b.worker(t, Config{BatchSize: 100}, hook)
	<-crashed
	stop()
	committed, _ := b.count(t)
	require.Positive(t, committed, "the crashed batch was committed")

	b.worker(t, Config{BatchSize: 100}, nil) // a replica picks up the redeliveries
	b.waitEvents(t, n)
	require.Eventually(t, func() bool {
		info, err := b.cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, 20*time.Second, 20*time.Millisecond)
	got, entries := b.count(t)
	require.Equal(t, n, got, "every event once")
	require.Equal(t, 2*n, entries, "one entry for the card and one for the board, once each")
	var dups float64
	require.Eventually(t, func() bool {
		dups = testenv.CounterValue(t, b.metrics.eventsTotal.WithLabelValues("duplicate"))
		return dups > 0
	}, 5*time.Second, 10*time.Millisecond, "the redelivered batch was seen as duplicates")
}
