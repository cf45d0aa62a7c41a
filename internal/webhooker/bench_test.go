package webhooker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/safehttp"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/attempt"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
	"github.com/eventline/eventline/pkg/events"
	"github.com/eventline/eventline/pkg/webhook"
)

// benchReceiver is a plain local HTTP receiver that answers 200 at once,
// except on paths starting with /slow, which answer after slowFor. It
// counts requests per path prefix and records when each event id first
// arrived.
type benchReceiver struct {
	url     string
	srv     *http.Server
	hits    atomic.Int64
	slow    atomic.Int64
	slowFor time.Duration
	mu      sync.Mutex
	arrived map[string]time.Time
	record  atomic.Bool
}

func startBenchReceiver(b *testing.B, slowFor time.Duration) *benchReceiver {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	r := &benchReceiver{url: "http://" + l.Addr().String(), slowFor: slowFor, arrived: map[string]time.Time{}}
	release := make(chan struct{})
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		if strings.HasPrefix(req.URL.Path, "/slow") {
			r.slow.Add(1)
			select {
			case <-time.After(r.slowFor):
			case <-release:
			}
			return
		}
		if r.record.Load() {
			id := req.Header.Get("webhook-id")
			now := time.Now()
			r.mu.Lock()
			if _, ok := r.arrived[id]; !ok {
				r.arrived[id] = now
			}
			r.mu.Unlock()
		}
		r.hits.Add(1)
	})}
	go func() { _ = r.srv.Serve(l) }()
	b.Cleanup(func() { close(release); _ = r.srv.Close() })
	return r
}

type benchEnv struct {
	b     *testing.B
	cpu   *cpuMeter
	js    jetstream.JetStream // admin: the floor's raw consumers (bench_floor_test.go)
	pub   *events.Publisher
	svc   *Service
	store *endpoint.Store
	stop  func()
}

// startBenchWebhooker runs the webhooker service in process against a
// nats-server process (sync_interval: always) and a fresh database.
func startBenchWebhooker(b *testing.B) *benchEnv {
	b.Helper()
	ctx := context.Background()
	p := testenv.StartNATSProcess(b)
	nc := testenv.ConnectProcess(b, p)
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
	pool := testenv.Pool(b)
	client, err := safehttp.New(safehttp.Config{AllowPrivate: true})
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := EnsureConsumer(ctx, js, DefaultConsumer, 100, 0); err != nil {
		b.Fatal(err)
	}
	wjs, err := jetstream.New(p.ConnectAs(b, natsauth.Webhooker))
	if err != nil {
		b.Fatal(err)
	}
	svc, err := NewService(ctx, p.ConnectAs(b, natsauth.Webhooker), wjs, pool, attempt.HTTPPoster{Client: client}, pub,
		Config{RefreshEvery: benchRefreshEvery(), Secrets: testenv.Keyring(b), Handlers: envInt("BENCH_HANDLERS"), Dispatch: attempt.DispatchConfig{PerEndpoint: envInt("BENCH_PER_ENDPOINT"), Workers: envInt("BENCH_WORKERS"), MinWorkers: envInt("BENCH_MIN_WORKERS")}, FirstAttempt: FirstAttemptConfig{MaxEndpoints: envInt("BENCH_FIRST_MAX_ENDPOINTS")}}, NewMetrics(prometheus.NewRegistry()), log)
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	env := &benchEnv{b: b, cpu: &cpuMeter{pool: pool, natsPID: p.PID()}, js: js, pub: pub, svc: svc, store: svc.Store(), stop: func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("webhooker: %v", err)
		}
	}}
	b.Cleanup(env.stop)
	return env
}

func (e *benchEnv) endpoints(urls []string) {
	e.b.Helper()
	ctx := context.Background()
	var ids []string
	for _, u := range urls {
		secret, _ := webhook.GenerateSecret()
		ep, err := e.store.CreateEndpoint(ctx, endpoint.Endpoint{Tenant: "acme", URL: u, Events: []string{"*"}, Format: "json"}, secret)
		if err != nil {
			e.b.Fatal(err)
		}
		ids = append(ids, ep.ID)
	}
	testenv.Poll(e.b, 30*time.Second, "endpoints loaded by the registry", func() bool {
		for _, id := range ids {
			if _, ok := e.svc.registry.Get(id); !ok {
				return false
			}
		}
		return true
	})
}

func benchEvents(n int, prefix string) []events.Event {
	out := make([]events.Event, n)
	for i := range out {
		out[i] = events.Event{ID: fmt.Sprintf("%s-%d", prefix, i), Tenant: "acme", Action: "closed", Eventable: events.Ref{Type: "card", ID: fmt.Sprintf("c%d", i)},
			Creator: events.Ref{Type: "user", ID: "u7"}, Parents: []events.Ref{{Type: "board", ID: "b1"}}, Particulars: json.RawMessage(`{"column":"Done","title":"A card with a title"}`)}
	}
	return out
}

// waitHits waits until the receiver has counted want requests.
func waitHits(b *testing.B, counter *atomic.Int64, want int64, within time.Duration) {
	b.Helper()
	testenv.Poll(b, within, fmt.Sprintf("receiver got %d requests", want), func() bool { return counter.Load() >= want })
}

// rawRate posts n signed event bodies to url with a plain Go HTTP client
// and 64 concurrent senders: the baseline.
func rawRate(b *testing.B, urls []string, n int) float64 {
	b.Helper()
	return rawRateWith(b, urls, n, 64)
}

// rawRateWith is rawRate with as many concurrent senders as given.
func rawRateWith(b *testing.B, urls []string, n, senders int) float64 {
	b.Helper()
	secret, _ := webhook.GenerateSecret()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 0}, Timeout: 15 * time.Second}
	evs := benchEvents(n, "raw")
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				e := evs[i]
				e.RecordedAt, e.OccurredAt, e.Type, e.Seq = start, start, "card.closed", uint64(i+1)
				body, _ := json.Marshal(e)
				now := time.Now()
				sig, _ := webhook.Sign(secret, e.ID, now, body)
				req, _ := http.NewRequest(http.MethodPost, urls[int(i)%len(urls)], bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(webhook.HeaderID, e.ID)
				req.Header.Set(webhook.HeaderTimestamp, fmt.Sprint(now.Unix()))
				req.Header.Set(webhook.HeaderSignature, sig)
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	client.CloseIdleConnections()
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkFanout1to1: N events to one endpoint, next to the raw client
// posting the same number of signed bodies to the same receiver.
func BenchmarkFanout1to1(b *testing.B) {
	const n = 20_000
	env := startBenchWebhooker(b)
	rc := startBenchReceiver(b, 0)
	env.endpoints([]string{rc.url + "/one"})
	var raw, ours []float64
	var rawCPU, ourCPU, pgCPU, jsCPU, appendCPU, logCPU []cpuUse
	for i := 0; i < b.N; i++ {
		rc.hits.Store(0)
		c := env.cpu.sample(b)
		raw = append(raw, rawRate(b, []string{rc.url + "/raw"}, n))
		rawCPU = append(rawCPU, env.cpu.since(b, c))
		rc.hits.Store(0)
		evs := benchEvents(n, fmt.Sprintf("r%d", i))
		observed := env.observeWindow(i)
		res, used := env.appendPaused(evs)
		appendCPU = append(appendCPU, used)
		c = env.cpu.sample(b)
		start := env.resume()
		waitHits(b, &rc.hits, n, 5*time.Minute)
		ours = append(ours, float64(n)/time.Since(start).Seconds())
		env.waitLogged((i + 1) * n)
		ourCPU = append(ourCPU, env.cpu.since(b, c))
		env.waitAttempts((i + 1) * n)
		observed(n)
		pgCPU = append(pgCPU, env.floorInsert(1, evs, res[0].Seq))
		logCPU = append(logCPU, env.floorLog(1, evs))
		jsCPU = append(jsCPU, env.floorConsume(res[0].Seq, n))
	}
	report(b, n, raw, ours, rawCPU, ourCPU)
	reportFloor(b, n, ourCPU, rawCPU, pgCPU, jsCPU, appendCPU, logCPU)
}

// BenchmarkFanout1to1000: events to 1,000 endpoints (1,000 deliveries per
// event), next to the raw client posting as many signed bodies across the
// same 1,000 URLs.
func BenchmarkFanout1to1000(b *testing.B) {
	const endpoints, perRun = 1000, 20
	env := startBenchWebhooker(b)
	rc := startBenchReceiver(b, 0)
	urls := make([]string, endpoints)
	for i := range urls {
		urls[i] = fmt.Sprintf("%s/e/%d", rc.url, i)
	}
	env.endpoints(urls)
	var raw, ours []float64
	var rawCPU, ourCPU, pgCPU, jsCPU, appendCPU, logCPU []cpuUse
	for i := 0; i < b.N; i++ {
		rc.hits.Store(0)
		c := env.cpu.sample(b)
		raw = append(raw, rawRate(b, urls, endpoints*perRun))
		rawCPU = append(rawCPU, env.cpu.since(b, c))
		rc.hits.Store(0)
		evs := benchEvents(perRun, fmt.Sprintf("r%d", i))
		observed := env.observeWindow(i)
		res, used := env.appendPaused(evs)
		appendCPU = append(appendCPU, used)
		c = env.cpu.sample(b)
		start := env.resume()
		waitHits(b, &rc.hits, endpoints*perRun, 5*time.Minute)
		ours = append(ours, float64(endpoints*perRun)/time.Since(start).Seconds())
		env.waitLogged((i + 1) * endpoints * perRun)
		ourCPU = append(ourCPU, env.cpu.since(b, c))
		env.waitAttempts((i + 1) * endpoints * perRun)
		observed(endpoints * perRun)
		pgCPU = append(pgCPU, env.floorInsert(endpoints, evs, res[0].Seq))
		logCPU = append(logCPU, env.floorLog(endpoints, evs))
		jsCPU = append(jsCPU, env.floorConsume(res[0].Seq, perRun))
	}
	report(b, endpoints*perRun, raw, ours, rawCPU, ourCPU)
	reportFloor(b, endpoints*perRun, ourCPU, rawCPU, pgCPU, jsCPU, appendCPU, logCPU)
}

// BenchmarkFanoutSlowReceivers: events to 1,000 endpoints that each
// answer after 50 ms, as receivers across the internet do. Deliveries per
// second are bound by attempts in flight (at most WEBHOOK_WORKERS / 50 ms),
// not by CPU, so the limit on attempts in flight, which starts at
// WEBHOOK_MIN_WORKERS, must climb to WEBHOOK_WORKERS. The baseline is the
// raw client with as many concurrent senders (512) posting as many bodies
// to the same URLs; BENCH_MIN_WORKERS=512 runs the webhooker with the
// limit fixed there.
func BenchmarkFanoutSlowReceivers(b *testing.B) {
	const endpoints, perRun, answerIn = 1000, 20, 50 * time.Millisecond
	env := startBenchWebhooker(b)
	rc := startBenchReceiver(b, answerIn)
	urls := make([]string, endpoints)
	for i := range urls {
		urls[i] = fmt.Sprintf("%s/slow/%d", rc.url, i)
	}
	env.endpoints(urls)
	var workers int
	testenv.Poll(b, 10*time.Second, "the dispatcher started", func() bool {
		env.svc.mu.Lock()
		defer env.svc.mu.Unlock()
		if env.svc.dispatcher != nil {
			workers = env.svc.dispatcher.Workers()
		}
		return workers > 0
	})
	var raw, ours []float64
	var rawCPU, ourCPU []cpuUse
	for i := 0; i < b.N; i++ {
		rc.slow.Store(0)
		c := env.cpu.sample(b)
		raw = append(raw, rawRateWith(b, urls, endpoints*perRun, workers))
		rawCPU = append(rawCPU, env.cpu.since(b, c))
		rc.slow.Store(0)
		env.appendPaused(benchEvents(perRun, fmt.Sprintf("r%d", i)))
		c = env.cpu.sample(b)
		start := env.resume()
		waitHits(b, &rc.slow, endpoints*perRun, 5*time.Minute)
		ours = append(ours, float64(endpoints*perRun)/time.Since(start).Seconds())
		env.waitLogged((i + 1) * endpoints * perRun)
		ourCPU = append(ourCPU, env.cpu.since(b, c))
	}
	report(b, endpoints*perRun, raw, ours, rawCPU, ourCPU)
}

// BenchmarkSlowEndpointIsolation: deliveries/s to 100 healthy endpoints
// while one more endpoint answers only after 10 s, against the same load
// with that endpoint disabled; rounds alternate so both see the same
// table sizes.
func BenchmarkSlowEndpointIsolation(b *testing.B) {
	// 99 + the slow one: 100 endpoints, whose first attempts the fan-out
	// waits for (FirstAttemptConfig.MaxEndpoints).
	const healthy, perRun = 99, 100
	env := startBenchWebhooker(b)
	rc := startBenchReceiver(b, 10*time.Second)
	// The slow endpoint is another server, as it would be: endpoints on
	// one host:port also share that host's connection limit.
	slowServer := startBenchReceiver(b, 10*time.Second)
	urls := make([]string, healthy)
	for i := range urls {
		urls[i] = fmt.Sprintf("%s/h/%d", rc.url, i)
	}
	env.endpoints(urls)
	env.endpoints([]string{slowServer.url + "/slow"})
	var slowID string
	for _, e := range mustList(b, env) {
		if strings.HasSuffix(e.URL, "/slow") {
			slowID = e.ID
		}
	}
	setSlow := func(enabled bool) {
		if _, err := env.store.SetEnabled(context.Background(), "acme", slowID, enabled, "benchmark"); err != nil {
			b.Fatal(err)
		}
		testenv.Poll(b, 10*time.Second, "registry follows the change", func() bool {
			e, ok := env.svc.registry.Get(slowID)
			return ok && e.Enabled == enabled
		})
	}
	measure := func(run string) float64 {
		rc.hits.Store(0)
		start := time.Now()
		if _, err := env.pub.AppendBatch(context.Background(), benchEvents(perRun, run)); err != nil {
			b.Fatal(err)
		}
		waitHits(b, &rc.hits, healthy*perRun, 5*time.Minute)
		return float64(healthy*perRun) / time.Since(start).Seconds()
	}
	var without, with []float64
	for i := 0; i < b.N; i++ {
		setSlow(false)
		without = append(without, measure(fmt.Sprintf("a%d", i)))
		setSlow(true)
		with = append(with, measure(fmt.Sprintf("b%d", i)))
	}
	b.ReportMetric(testenv.Median(without), "healthy-deliveries/s")
	b.ReportMetric(testenv.Median(with), "healthy-with-slow-deliveries/s")
	b.ReportMetric(testenv.Median(with)/testenv.Median(without), "with/without")
	b.ReportMetric(float64(slowServer.slow.Load()), "slow-requests")
}

func mustList(b *testing.B, env *benchEnv) []endpoint.Endpoint {
	b.Helper()
	eps, err := env.store.ListEndpoints(context.Background(), "acme", "", 200)
	if err != nil {
		b.Fatal(err)
	}
	return eps
}

// BenchmarkFirstAttemptLatency: events appended at a steady 1,000/s for
// 10 s to one endpoint; latency from the event's recorded_at to its
// arrival at the receiver.
func BenchmarkFirstAttemptLatency(b *testing.B) {
	env := startBenchWebhooker(b)
	rc := startBenchReceiver(b, 0)
	env.endpoints([]string{rc.url + "/lat"})
	var p50s, p99s, maxs []float64
	for i := 0; i < b.N; i++ {
		rc.mu.Lock()
		clear(rc.arrived)
		rc.mu.Unlock()
		rc.record.Store(true)
		recorded := map[string]time.Time{}
		var mu sync.Mutex
		tick := time.NewTicker(10 * time.Millisecond) // 10 events every 10 ms
		var wg sync.WaitGroup
		for k := range 1000 {
			<-tick.C
			wg.Add(1)
			go func() {
				defer wg.Done()
				evs := benchEvents(10, fmt.Sprintf("l%d-%d", i, k))
				now := time.Now()
				if _, err := env.pub.AppendBatch(context.Background(), evs); err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				for _, e := range evs {
					recorded[e.ID] = now
				}
				mu.Unlock()
			}()
		}
		tick.Stop()
		wg.Wait()
		testenv.Poll(b, time.Minute, "every event arrived", func() bool {
			rc.mu.Lock()
			defer rc.mu.Unlock()
			return len(rc.arrived) >= len(recorded)
		})
		rc.record.Store(false)
		var lat []float64
		rc.mu.Lock()
		for id, at := range recorded {
			if arr, ok := rc.arrived[id]; ok {
				lat = append(lat, float64(arr.Sub(at))/float64(time.Millisecond))
			}
		}
		rc.mu.Unlock()
		if len(lat) != len(recorded) {
			b.Fatalf("%d of %d events arrived", len(lat), len(recorded))
		}
		slices.Sort(lat)
		p50s, p99s, maxs = append(p50s, lat[len(lat)/2]), append(p99s, lat[len(lat)*99/100]), append(maxs, lat[len(lat)-1])
	}
	b.ReportMetric(testenv.Median(p50s), "first-attempt-p50-ms")
	b.ReportMetric(testenv.Median(p99s), "first-attempt-p99-ms")
	b.ReportMetric(testenv.Median(maxs), "first-attempt-max-ms")
}

// report prints the medians: rates, their ratio, and the CPU (this
// process + nats-server + the database's Postgres backends) per delivery
// and per raw request, whose ratio is steadier than the rates' on a shared
// machine; the delivery's CPU also by process.
func report(b *testing.B, n int, raw, ours []float64, rawCPU, ourCPU []cpuUse) {
	b.ReportMetric(testenv.Median(raw), "raw-req/s")
	b.ReportMetric(testenv.Median(ours), "deliveries/s")
	b.ReportMetric(testenv.Median(ours)/testenv.Median(raw), "deliveries/raw")
	per := func(us []cpuUse, part func(cpuUse) time.Duration) float64 {
		v := make([]float64, len(us))
		for i, u := range us {
			v[i] = float64(part(u)) / float64(time.Microsecond) / float64(n)
		}
		return testenv.Median(v)
	}
	rawTotal, ourTotal := per(rawCPU, cpuUse.total), per(ourCPU, cpuUse.total)
	b.ReportMetric(rawTotal, "raw-cpu-µs/req")
	b.ReportMetric(ourTotal, "cpu-µs/delivery")
	b.ReportMetric(per(ourCPU, func(u cpuUse) time.Duration { return u.self }), "go-cpu-µs/delivery")
	b.ReportMetric(per(ourCPU, func(u cpuUse) time.Duration { return u.pg }), "pg-cpu-µs/delivery")
	b.ReportMetric(per(ourCPU, func(u cpuUse) time.Duration { return u.nats }), "nats-cpu-µs/delivery")
	b.ReportMetric(rawTotal/ourTotal, "raw-cpu/cpu")
}

// envInt reads a tuning knob for experiments (BENCH_HANDLERS,
// BENCH_PER_ENDPOINT, BENCH_WORKERS: WEBHOOK_WORKERS, BENCH_MIN_WORKERS:
// WEBHOOK_MIN_WORKERS, BENCH_FIRST_MAX_ENDPOINTS:
// FirstAttemptConfig.MaxEndpoints); unset is 0, the service's default.
func envInt(k string) int { n, _ := strconv.Atoi(os.Getenv(k)); return n }
