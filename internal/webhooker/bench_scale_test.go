package webhooker

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/pkg/webhook"
)

// fanReceiver is one local HTTP server answering 200 at once for every
// endpoint of a large fan-out: endpoint i is the path /f/i. It counts the
// deliveries of each (endpoint, event) pair of the current round, so a
// benchmark can check that every endpoint got every event exactly once.
// Paths under /raw/ are the raw client's and are not counted. It runs in
// the benchmark process: its CPU is in cpuUse.self.
type fanReceiver struct {
	url       string
	endpoints int
	events    int
	counts    []atomic.Int32 // endpoint*events + event index
	prefix    atomic.Pointer[string]
	hits      atomic.Int64 // deliveries of this round
	stray     atomic.Int64 // deliveries this round did not expect
	last      atomic.Int64 // unix ns of this round's latest delivery
}

func startFanReceiver(b *testing.B, endpoints, events int) *fanReceiver {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	r := &fanReceiver{url: "http://" + l.Addr().String(), endpoints: endpoints, events: events, counts: make([]atomic.Int32, endpoints*events)}
	r.prefix.Store(new(string))
	srv := &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: time.Minute}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { _ = srv.Close() })
	return r
}

func (r *fanReceiver) serve(w http.ResponseWriter, req *http.Request) {
	_, _ = io.Copy(io.Discard, req.Body)
	rest, ok := strings.CutPrefix(req.URL.Path, "/f/")
	if !ok {
		return // the raw client's
	}
	ep, err := strconv.Atoi(rest)
	id := req.Header.Get(webhook.HeaderID) // the event id: "<prefix>-<k>"
	cut := strings.LastIndexByte(id, '-')
	if err != nil || ep < 0 || ep >= r.endpoints || cut < 0 || id[:cut] != *r.prefix.Load() {
		r.stray.Add(1)
		return
	}
	k, err := strconv.Atoi(id[cut+1:])
	if err != nil || k < 0 || k >= r.events {
		r.stray.Add(1)
		return
	}
	r.counts[ep*r.events+k].Add(1)
	r.last.Store(time.Now().UnixNano())
	r.hits.Add(1)
}

// round starts counting the events whose ids start with prefix.
func (r *fanReceiver) round(prefix string) {
	r.prefix.Store(&prefix)
	for i := range r.counts {
		r.counts[i].Store(0)
	}
	r.hits.Store(0)
	r.stray.Store(0)
}

// verify fails the benchmark unless every endpoint got every event of the
// round exactly once and nothing else arrived.
func (r *fanReceiver) verify(b *testing.B) {
	b.Helper()
	var wrong []string
	bad := 0
	for i := range r.counts {
		if c := r.counts[i].Load(); c != 1 {
			bad++
			if len(wrong) < 5 {
				wrong = append(wrong, fmt.Sprintf("/f/%d event %d: %d times", i/r.events, i%r.events, c))
			}
		}
	}
	if bad > 0 || r.stray.Load() > 0 {
		b.Fatalf("%d (endpoint, event) pairs not delivered exactly once (%s), %d stray deliveries", bad, strings.Join(wrong, "; "), r.stray.Load())
	}
}

// insertEndpoints writes one endpoint per URL for tenant acme with a
// single COPY, sealed like endpoint.Store.CreateEndpoint seals them, and waits for
// the registry to load them all: as the API would create them, without
// 100,000 round trips.
func (e *benchEnv) insertEndpoints(urls []string) {
	e.b.Helper()
	ctx := context.Background()
	rows := make([][]any, len(urls))
	ids := make([]string, len(urls))
	for i, u := range urls {
		ids[i] = delivery.NewID()
		s, err := webhook.GenerateSecret()
		if err != nil {
			e.b.Fatal(err)
		}
		sealed, keyID, err := e.store.SealFirstSecret("acme", ids[i], s)
		if err != nil {
			e.b.Fatal(err)
		}
		rows[i] = []any{"acme", ids[i], u, []string{"*"}, "json", sealed, keyID}
	}
	if _, err := e.svc.pool.CopyFrom(ctx, pgx.Identifier{"webhook", "endpoints"},
		[]string{"tenant", "id", "url", "events", "format", "secrets_sealed", "secrets_key"}, pgx.CopyFromRows(rows)); err != nil {
		e.b.Fatal(err)
	}
	// Autovacuum analyzes the table within a minute or so of a bulk
	// insert; until then the registry's refresh keeps the plan it cached
	// while the table was empty, a sequential scan of every endpoint
	// every RefreshEvery. The benchmark measures the steady state after.
	if _, err := e.svc.pool.Exec(ctx, `ANALYZE webhook.endpoints`); err != nil {
		e.b.Fatal(err)
	}
	testenv.Poll(e.b, 2*time.Minute, "endpoints loaded by the registry", func() bool {
		for _, id := range ids {
			if _, ok := e.svc.registry.Get(id); !ok {
				return false
			}
		}
		return true
	})
}

// waitSettled waits until every delivery of a shared fan-out has its
// outcome written: the result writer deletes a scheduled delivery's due
// row once its attempt is logged (results.go).
func (e *benchEnv) waitSettled() {
	e.b.Helper()
	testenv.Poll(e.b, 5*time.Minute, "every delivery logged", func() bool {
		var left bool
		if err := e.svc.pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM webhook.due) OR EXISTS (SELECT 1 FROM webhook.chunks) OR EXISTS (SELECT 1 FROM webhook.deliveries WHERE status = 'pending')`).Scan(&left); err != nil {
			e.b.Fatal(err)
		}
		return !left
	})
}

// profileSystem starts a CPU profile of this process into the file
// BENCH_CPUPROFILE names, for the webhooker's part of the first
// iteration only (not the raw client's or the floor's); it returns the
// function that stops it.
func profileSystem(b *testing.B, iteration int) func() {
	path := os.Getenv("BENCH_CPUPROFILE")
	if path == "" || iteration > 0 {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }
}

// observeWindow starts what BENCH_CPUPROFILE and BENCH_PGSTATS ask for
// the webhooker's window of iteration i (a CPU profile of this process,
// Postgres' statements on CPU and its counters); the returned func stops
// it and prints what it saw for deliveries.
func (e *benchEnv) observeWindow(i int) (stop func(deliveries int)) {
	stopProfile := profileSystem(e.b, i)
	if os.Getenv("BENCH_PGSTATS") == "" {
		return func(int) { stopProfile() }
	}
	time.Sleep(11 * time.Second) // the raw client's round is published
	stats := e.readPGStats()
	stopSampling := make(chan struct{})
	sampled := e.samplePGActivity(stopSampling)
	return func(deliveries int) {
		stopProfile()
		close(stopSampling)
		<-sampled
		e.logPGStatsSince(stats, deliveries)
	}
}

// benchmarkFanoutScale: one tenant with endpoints endpoints, all on one
// local receiver (distinct paths), perRun events a round; more than
// Config.ShareAbove endpoints, so the fan-out is cut into chunks that the
// scheduler takes (fanout.share). In the same iteration:
// the raw client posting as many requests, and the durable floor
// (bench_floor_test.go). The webhooker's window runs from the moment its
// durable may deliver the events, appended while it was paused
// (appendPaused), to the last delivery's outcome written; deliveries/s and
// last-delivery-s end at the last delivery's arrival.
func benchmarkFanoutScale(b *testing.B, endpoints, perRun int) {
	env := startBenchWebhooker(b)
	rc := startFanReceiver(b, endpoints, perRun)
	urls := make([]string, endpoints)
	rawURLs := make([]string, endpoints)
	for i := range urls {
		urls[i] = fmt.Sprintf("%s/f/%d", rc.url, i)
		rawURLs[i] = fmt.Sprintf("%s/raw/%d", rc.url, i)
	}
	env.insertEndpoints(urls)
	env.floorTable()
	n := endpoints * perRun
	var raw, ours, lastAt []float64
	var rawCPU, ourCPU, pgCPU, jsCPU, appendCPU, logCPU []cpuUse
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := env.cpu.sample(b)
		raw = append(raw, rawRate(b, rawURLs, n))
		rawCPU = append(rawCPU, env.cpu.since(b, c))

		prefix := fmt.Sprintf("s%d", i)
		rc.round(prefix)
		evs := benchEvents(perRun, prefix)
		observed := env.observeWindow(i)
		res, used := env.appendPaused(evs)
		appendCPU = append(appendCPU, used)
		c = env.cpu.sample(b)
		start := env.resume()
		waitHits(b, &rc.hits, int64(n), 10*time.Minute)
		took := time.Unix(0, rc.last.Load()).Sub(start)
		env.waitSettled()
		ourCPU = append(ourCPU, env.cpu.since(b, c))
		observed(n)
		ours = append(ours, float64(n)/took.Seconds())
		lastAt = append(lastAt, took.Seconds())
		// Every outcome is written and nothing is due or pending any
		// more (waitSettled): no attempt can still come, and a duplicate
		// (a claim that ended while its delivery was in flight or
		// queued) has already arrived.
		rc.verify(b)

		pgCPU = append(pgCPU, env.floorInsert(endpoints, evs, res[0].Seq))
		logCPU = append(logCPU, env.floorLog(endpoints, evs))
		jsCPU = append(jsCPU, env.floorConsume(res[0].Seq, perRun))
	}
	b.StopTimer()
	report(b, n, raw, ours, rawCPU, ourCPU)
	reportFloor(b, n, ourCPU, rawCPU, pgCPU, jsCPU, appendCPU, logCPU)
	b.ReportMetric(testenv.Median(lastAt), "last-delivery-s")
}

// BenchmarkFanout1to10000: 3 events to 10,000 endpoints of one tenant.
func BenchmarkFanout1to10000(b *testing.B) { benchmarkFanoutScale(b, 10_000, 3) }

// BenchmarkFanout1to100000: 1 event to 100,000 endpoints of one tenant.
func BenchmarkFanout1to100000(b *testing.B) { benchmarkFanoutScale(b, 100_000, 1) }

// pgStats is what Postgres counted for the webhook tables and the
// database: row writes and index reads, for BENCH_PGSTATS.
type pgStats map[string]int64

// readPGStats reads the statistics views (docs/operations.md): per table
// of the webhook schema, rows inserted, updated (HOT or not), deleted,
// and index entries read; for the database, commits.
func (e *benchEnv) readPGStats() pgStats {
	e.b.Helper()
	ctx := context.Background()
	out := pgStats{}
	rows, err := e.svc.pool.Query(ctx, `SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, coalesce(idx_tup_fetch, 0), coalesce(seq_tup_read, 0)
		FROM pg_stat_user_tables WHERE schemaname = 'webhook'`)
	if err != nil {
		e.b.Fatal(err)
	}
	var name string
	var ins, upd, hot, del, idx, seq int64
	if _, err := pgx.ForEachRow(rows, []any{&name, &ins, &upd, &hot, &del, &idx, &seq}, func() error {
		out[name+" ins"], out[name+" upd"], out[name+" hot-upd"], out[name+" del"], out[name+" idx-fetch"], out[name+" seq-read"] = ins, upd, hot, del, idx, seq
		return nil
	}); err != nil {
		e.b.Fatal(err)
	}
	rows, err = e.svc.pool.Query(ctx, `SELECT indexrelname, idx_tup_read FROM pg_stat_user_indexes WHERE schemaname = 'webhook'`)
	if err != nil {
		e.b.Fatal(err)
	}
	if _, err := pgx.ForEachRow(rows, []any{&name, &idx}, func() error { out[name+" idx-read"] = idx; return nil }); err != nil {
		e.b.Fatal(err)
	}
	var commits int64
	if err := e.svc.pool.QueryRow(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&commits); err != nil {
		e.b.Fatal(err)
	}
	out["commits"] = commits
	return out
}

// logPGStatsSince logs, per delivery, what changed since before: where
// the webhooker's Postgres time goes next to the floor's one row insert.
// Backends publish their counters within about 10 s of going idle, so it
// waits that long first (outside every measurement).
func (e *benchEnv) logPGStatsSince(before pgStats, deliveries int) {
	e.b.Helper()
	time.Sleep(11 * time.Second)
	after := e.readPGStats()
	var lines []string
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			lines = append(lines, fmt.Sprintf("%-40s %10d %8.3f/delivery", k, d, float64(d)/float64(deliveries)))
		}
	}
	slices.Sort(lines)
	fmt.Fprintf(os.Stderr, "Postgres counters for %d deliveries:\n%s\n", deliveries, strings.Join(lines, "\n"))
}

// samplePGActivity samples, every 5 ms until stop is closed, what the
// database's other backends are running (pg_stat_activity), and prints
// the statements most often seen on CPU (no wait event): a statement
// profile of Postgres for BENCH_PGSTATS.
func (e *benchEnv) samplePGActivity(stop <-chan struct{}) (done <-chan struct{}) {
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		ctx := context.Background()
		seen := map[string]int{}
		samples := 0
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				type kv struct {
					k string
					n int
				}
				var top []kv
				for k, n := range seen {
					top = append(top, kv{k, n})
				}
				slices.SortFunc(top, func(a, b kv) int { return b.n - a.n })
				var lines []string
				for _, t := range top[:min(len(top), 12)] {
					lines = append(lines, fmt.Sprintf("%6d %5.1f%%  %s", t.n, 100*float64(t.n)/float64(max(1, samples)), t.k))
				}
				fmt.Fprintf(os.Stderr, "Postgres backends on CPU, %d samples every 5 ms (count, share of samples, statement):\n%s\n", samples, strings.Join(lines, "\n"))
				return
			case <-tick.C:
			}
			rows, err := e.svc.pool.Query(ctx, `SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 110) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active' AND wait_event IS NULL`)
			if err != nil {
				continue
			}
			var q string
			_, _ = pgx.ForEachRow(rows, []any{&q}, func() error { seen[q]++; return nil })
			samples++
		}
	}()
	return finished
}

// benchRefreshEvery is how often the benchmarks' registry follows
// endpoint changes: 50 ms (new endpoints are found at once), or
// BENCH_REFRESH_MS; the service's default is 250 ms. Each refresh is a
// query whose cost can grow with the endpoints of the database, so at
// 100,000 endpoints the interval shows in CPU per delivery.
func benchRefreshEvery() time.Duration {
	if ms := envInt("BENCH_REFRESH_MS"); ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	return 50 * time.Millisecond
}
