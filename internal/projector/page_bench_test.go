package projector

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// BenchmarkTimelinePage measures what row-level security costs a timeline
// page: Store.List (postgres.TenantBatch as eventline_app: BEGIN, SET LOCAL
// ROLE, the tenant setting, the generation and the page in one round trip,
// then COMMIT) against the same two queries run directly as the owner
// without a transaction (the path before row-level security), in rounds of
// PAGE_BENCH_PAGES pages (default 2,000) over PAGE_BENCH_EVENTS synthetic
// events (default 200,000). Pages alternate between the two paths; it reports the medians
// over rounds of each round's median page latency, and their ratio.
func BenchmarkTimelinePage(b *testing.B) {
	n, pages := envInt(b, "PAGE_BENCH_EVENTS", 200_000), envInt(b, "PAGE_BENCH_PAGES", 2_000)
	ctx := context.Background()
	// Each path has its own pool, so neither finds statements the other
	// prepared under another role (which would make Postgres re-plan).
	dbURL := testenv.Database(b)
	pool, err := postgres.Open(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	directPool, err := postgres.Open(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer directPool.Close()
	loadSynthetic(b, pool, n)
	store := NewStore(pool)
	queries := []Query{
		{Tenant: "acme", Object: &events.Ref{Type: "board", ID: "b7"}, Limit: 50},
		{Tenant: "acme", Limit: 50},
		{Tenant: "acme", Object: &events.Ref{Type: "card", ID: "card42"}, Actions: []string{"closed"}, Limit: 50},
	}
	directPage := func(q Query) error {
		g, err := currentGeneration(ctx, directPool)
		if err != nil {
			return err
		}
		sql, args := q.sql(g)
		rows, err := directPool.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		_, err = pgx.CollectRows(rows, scanEvent(q.Tenant))
		return err
	}
	viaRLS := func(q Query) error { _, err := store.List(ctx, q); return err }
	// Pages alternate between the two paths so both see the same load on
	// the (shared) machine; each round reports the median page of each.
	round := func() (direct, rls float64) {
		var ds, rs []float64
		for i := range pages {
			q := queries[i%len(queries)]
			for _, p := range []struct {
				f   func(Query) error
				out *[]float64
			}{{directPage, &ds}, {viaRLS, &rs}} {
				start := time.Now()
				if err := p.f(q); err != nil {
					b.Fatal(err)
				}
				*p.out = append(*p.out, float64(time.Since(start).Nanoseconds())/1e3)
			}
		}
		return testenv.Median(ds), testenv.Median(rs)
	}
	round() // warm the caches and the statement cache
	var raw, rls, ratio []float64
	for i := 0; i < max(b.N, 5); i++ {
		d, r := round()
		raw, rls, ratio = append(raw, d), append(rls, r), append(ratio, r/d)
		b.Logf("round %d: median page direct %.0f µs, TenantBatch %.0f µs (%.2fx)", i+1, d, r, r/d)
	}
	b.ReportMetric(testenv.Median(raw), "direct-us/page")
	b.ReportMetric(testenv.Median(rls), "rls-us/page")
	b.ReportMetric(testenv.Median(ratio), "rls/direct")
}

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	return v
}
