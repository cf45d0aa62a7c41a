package notifier

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

func benchInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// Benchmark sizes (environment overrides for quick runs).
var (
	benchEvents   = benchInt("BENCH_NOTIFY_EVENTS", 20_000)
	benchCards    = benchInt("BENCH_NOTIFY_CARDS", 2_000)
	benchWatchers = 10
)

// benchEventsFor returns card.closed events spread over the cards, each
// notifying the card's 10 watchers (the closer watches nothing).
func benchEventsFor(n, cards int) []events.Event {
	es := make([]events.Event, n)
	for i := range es {
		c := fmt.Sprintf("c%d", i%cards)
		es[i] = events.Event{ID: fmt.Sprintf("e%d", i), Tenant: "acme", Action: "closed",
			Eventable: events.Ref{Type: "card", ID: c}, Creator: events.Ref{Type: "user", ID: "closer"},
			Parents: []events.Ref{{Type: "board", ID: "b1"}}}
	}
	return es
}

func seedWatches(b *testing.B, pool *pgxpool.Pool, cards, watchers int) {
	b.Helper()
	_, err := pool.Exec(context.Background(), `INSERT INTO notify.watches (tenant, object_type, object_id, user_id)
		SELECT 'acme', 'card', 'c' || c, 'u' || ((c * 7 + w) % 5000) FROM generate_series(0, $1 - 1) c, generate_series(0, $2 - 1) w`, cards, watchers)
	if err != nil {
		b.Fatal(err)
	}
}

// runNotifier appends the events to a fresh stream, starts a notifier
// service on a fresh database and returns the time from start to the last
// event's commit.
func runNotifier(b *testing.B, es []events.Event, inflight int) time.Duration {
	b.Helper()
	ctx := context.Background()
	n := testenv.StartNATS(b)
	nc := n.Connect(b)
	if _, err := stream.Ensure(ctx, nc, stream.Config{}); err != nil {
		b.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	pub, err := events.NewPublisher(nc)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := pub.AppendBatch(ctx, es); err != nil {
		b.Fatal(err)
	}
	pool := testenv.Pool(b)
	seedWatches(b, pool, benchCards, benchWatchers)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := EnsureConsumer(ctx, js, DefaultConsumer, 50, 0); err != nil {
		b.Fatal(err)
	}
	njs, err := jetstream.New(n.ConnectAs(b, natsauth.Notifier))
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	svc, err := NewService(ctx, n.ConnectAs(b, natsauth.Notifier), njs, pool, apikey.NewStore(pool, 0), Config{Inflight: inflight}, NewMetrics(prometheus.NewRegistry()), log)
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	var took time.Duration
	testenv.Poll(b, 10*time.Minute, "all events applied", func() bool {
		var c int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM notify.processed`).Scan(&c); err != nil {
			b.Fatal(err)
		}
		if c >= len(es) {
			took = time.Since(start)
			return true
		}
		return false
	})
	stop()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	var total int64
	if err := pool.QueryRow(ctx, `SELECT sum(unread_count) FROM notify.notifications`).Scan(&total); err != nil {
		b.Fatal(err)
	}
	if total != int64(len(es)*benchWatchers) {
		b.Fatalf("notifier wrote %d notifications, want %d", total, len(es)*benchWatchers)
	}
	return took
}

// runRaw writes the same inbox rows with the notifier's upsert statement
// alone: batches of 500 events (5000 rows, aggregated per user and group
// as the notifier does), one transaction each, recipients known in
// advance.
func runRaw(b *testing.B, es []events.Event) time.Duration {
	b.Helper()
	ctx := context.Background()
	pool := testenv.Pool(b)
	seedWatches(b, pool, benchCards, benchWatchers)
	rows, err := pool.Query(ctx, `SELECT object_id, user_id FROM notify.watches WHERE tenant = 'acme'`)
	if err != nil {
		b.Fatal(err)
	}
	watchersOf := map[string][]string{}
	for rows.Next() {
		var c, u string
		if err := rows.Scan(&c, &u); err != nil {
			b.Fatal(err)
		}
		watchersOf[c] = append(watchersOf[c], u)
	}
	start := time.Now()
	for lo := 0; lo < len(es); lo += 500 {
		batch := es[lo:min(lo+500, len(es))]
		bumps := map[groupKey]*bump{}
		for i, e := range batch {
			ne := e
			_ = ne.Normalize(time.Now())
			body, _ := json.Marshal(ne) // the same last_event the notifier stores
			for _, u := range watchersOf[e.Eventable.ID] {
				k := groupKey{"acme", u, "card", e.Eventable.ID}
				if bumps[k] == nil {
					bumps[k] = &bump{}
				}
				bumps[k].count++
				bumps[k].seq, bumps[k].event = uint64(i), body
			}
		}
		if err := rawUpsert(ctx, pool, bumps); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// rawUpsertSQL is the inbox write alone: INSERT ... ON CONFLICT DO UPDATE
// over unnest, without RETURNING, the unread totals or the inbox
// sequences (each row gets a distinct change_seq from the caller).
const rawUpsertSQL = `INSERT INTO notify.notifications AS n (tenant, user_id, group_type, group_id, unread_count, last_event, created_at, updated_at, change_seq)
	SELECT t, u, gt, gi, c, e::jsonb, $7, $7, s FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $8::bigint[]) AS x(t, u, gt, gi, c, e, s)
	ON CONFLICT (tenant, user_id, group_type, group_id) DO UPDATE
	SET unread_count = n.unread_count + excluded.unread_count, last_event = excluded.last_event,
	    read_at = NULL, updated_at = excluded.updated_at, change_seq = excluded.change_seq`

// rawSeq numbers the raw baseline's rows (change_seq is unique per user).
var rawSeq int64

// rawUpsert is the baseline write (rawUpsertSQL), in key order, one
// transaction.
func rawUpsert(ctx context.Context, pool *pgxpool.Pool, bumps map[groupKey]*bump) error {
	keys := make([]groupKey, 0, len(bumps))
	for k := range bumps {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b groupKey) int {
		return cmp.Or(strings.Compare(a.user, b.user), strings.Compare(a.gid, b.gid))
	})
	n := len(keys)
	tenants, users, gtypes, gids, bodies := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	counts, seqs := make([]int32, n), make([]int64, n)
	for i, k := range keys {
		rawSeq++
		tenants[i], users[i], gtypes[i], gids[i], counts[i], bodies[i], seqs[i] = k.tenant, k.user, k.gtype, k.gid, int32(bumps[k].count), string(bumps[k].event), rawSeq
	}
	_, err := pool.Exec(ctx, rawUpsertSQL, tenants, users, gtypes, gids, counts, bodies, time.Now(), seqs)
	return err
}

// BenchmarkNotify: notifications/s (events × recipients, 10 watchers per
// card) of the notifier consuming a pre-filled stream, next to the same
// inbox rows written by batched unnest upserts alone, in alternating
// rounds of the same run.
func BenchmarkNotify(b *testing.B) {
	es := benchEventsFor(benchEvents, benchCards)
	inflight := benchInt("BENCH_NOTIFY_INFLIGHT", 0) // 0: the default
	notifs := float64(len(es) * benchWatchers)
	var svc, raw, ratio []float64
	for i := 0; i < b.N; i++ {
		r := notifs / runRaw(b, es).Seconds()
		s := notifs / runNotifier(b, es, inflight).Seconds()
		raw, svc, ratio = append(raw, r), append(svc, s), append(ratio, s/r)
		b.Logf("round %d: notifier %.0f notifications/s, raw upsert %.0f rows/s, ratio %.2f", i+1, s, r, s/r)
	}
	b.ReportMetric(testenv.Median(svc), "notifications/s")
	b.ReportMetric(testenv.Median(raw), "raw_rows/s")
	b.ReportMetric(testenv.Median(ratio), "ratio")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkInboxRead: API read latency of inboxes in a table of 1M
// notifications (10,000 users with 95 each, plus one user with 50,000).
func BenchmarkInboxRead(b *testing.B) {
	ctx := context.Background()
	pool := testenv.Pool(b)
	seedStart := time.Now()
	_, err := pool.Exec(ctx, `INSERT INTO notify.notifications (tenant, user_id, group_type, group_id, unread_count, last_event, read_at, created_at, updated_at)
		SELECT 'acme', CASE WHEN i < 50000 THEN 'heavy' ELSE 'u' || (i % 10000) END, 'card', 'c' || i, 1 + i % 5,
			jsonb_build_object('id', 'e' || i, 'type', 'card.closed', 'eventable', jsonb_build_object('type', 'card', 'id', 'c' || i),
				'creator', jsonb_build_object('type', 'user', 'id', 'u7'), 'particulars', '{}'::jsonb),
			CASE WHEN i % 3 = 0 THEN now() END, now() - interval '30 days', now() - (i || ' seconds')::interval
		FROM generate_series(0, 999999) i`)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE notify.notifications`); err != nil { // the steady state autovacuum keeps
		b.Fatal(err)
	}
	b.Logf("seeded 1M notifications in %v", time.Since(seedStart).Round(time.Millisecond))
	keys := apikey.NewStore(pool, 0)
	_, key, err := keys.Create(ctx, apikey.CreateParams{Tenant: "acme", Scopes: []string{apikey.ScopeRead}})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	NewAPI(NewStore(pool, nil), NewHub(pool, nil, slog.New(slog.NewTextHandler(io.Discard, nil))), keys, nil, 0, slog.New(slog.NewTextHandler(io.Discard, nil))).Routes(mux)
	srv := httptest.NewServer(mux)
	b.Cleanup(srv.Close)
	get := func(path string) time.Duration {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		t0 := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("%s: %d", path, resp.StatusCode)
		}
		return time.Since(t0)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	kinds := []struct {
		name string
		path func() string
	}{
		{"user_page", func() string { return fmt.Sprintf("/v1/users/u%d/notifications?limit=50", rng.IntN(10000)) }},
		{"user_unread", func() string {
			return fmt.Sprintf("/v1/users/u%d/notifications?status=unread&limit=50", rng.IntN(10000))
		}},
		{"heavy_page", func() string { return "/v1/users/heavy/notifications?limit=50" }},
		{"heavy_unread", func() string { return "/v1/users/heavy/notifications?status=unread&limit=50" }},
	}
	p50s, p99s := map[string][]float64{}, map[string][]float64{}
	for i := 0; i < b.N; i++ {
		for _, k := range kinds {
			for range 50 { // warm-up
				get(k.path())
			}
			var ds []float64
			for range 1000 {
				ds = append(ds, float64(get(k.path()).Microseconds())/1000)
			}
			slices.Sort(ds)
			p50s[k.name] = append(p50s[k.name], ds[len(ds)/2])
			p99s[k.name] = append(p99s[k.name], ds[len(ds)*99/100])
		}
	}
	for _, k := range kinds {
		b.Logf("%s: p50 %.2f ms, p99 %.2f ms (medians of %d rounds of 1000 reads; p99 per round %.2f)",
			k.name, testenv.Median(p50s[k.name]), testenv.Median(p99s[k.name]), b.N, p99s[k.name])
		b.ReportMetric(testenv.Median(p99s[k.name]), k.name+"_p99_ms")
	}
	b.ReportMetric(0, "ns/op")
}
