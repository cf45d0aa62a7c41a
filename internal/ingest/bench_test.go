package ingest_test

// Ingest throughput benchmarks (BENCHMARKS.md, scripts/bench.sh).
//
// Every benchmark runs against a real nats-server process at
// sync_interval: always with the EVENTS stream as the services provision
// it, and appends the same events: one deterministic corpus, encoded once,
// with only the unique id spliced in per event. Two raw nats.go baselines
// show what the broker itself can do on this machine:
//
//   - BenchmarkRawPublishAsync: one JetStream PublishMsgAsync per event, a
//     bounded window of acks in flight (the server syncs every message);
//   - BenchmarkRawAtomicBatch: atomic batches of 1000 events, 4 in flight,
//     as pkg/events sends them (the server syncs once per batch, after
//     staging it);
//
// and two measure the ingest binary, started as a subprocess, under HTTP
// load from this process:
//
//   - BenchmarkIngestBatched100: concurrent clients posting 100 events per
//     request;
//   - BenchmarkIngestSingle64: 64 concurrent clients posting one event per
//     request.
//
// One b.Loop iteration is one publish, one atomic batch or one HTTP request;
// "events/s" is events made durable divided by the wall time from the first
// iteration until the last one is acknowledged. Every run also checks that
// the stream holds exactly the events sent. Run them with an explicit
// -benchtime (a duration): scripts/bench.sh does.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/proccpu"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

const (
	benchTenant = "acme"
	// benchAsyncWindow bounds the raw per-message baseline's acks in flight:
	// as many as pkg/events pipelines in its one-by-one fallback.
	benchAsyncWindow = events.MaxBatch
	// benchAtomicInflight is how many raw atomic batches are committing at
	// once: the ingest committer's default MaxInflight.
	benchAtomicInflight = 4
	// benchBatchedEvents is the events per request of the batched case.
	benchBatchedEvents = 100
	// benchBatchedClients is the number of concurrent HTTP clients of the
	// batched case; EVENTLINE_BENCH_CLIENTS overrides it (BENCHMARKS.md
	// records the sweep that chose it).
	benchBatchedClients = 32
	// benchSingleClients is the number of concurrent HTTP clients of the
	// single-event case, fixed by the target.
	benchSingleClients = 64
	// benchWarmupEvents are appended before timing starts, so connections,
	// the stream's first block and the API key cache are warm.
	benchWarmupEvents = 5000
)

// BenchmarkRawPublishAsync is the per-message baseline: nats.go
// jetstream.PublishMsgAsync of one message per event, exactly as pkg/events
// publishes one event (subject, Nats-Msg-Id, Content-Type, expected stream),
// with at most benchAsyncWindow acks outstanding. One op is one event.
func BenchmarkRawPublishAsync(b *testing.B) {
	nb := startBenchNATS(b)
	c := benchCorpus(b)
	ids := newIDSource()
	var failed atomic.Int64
	var firstErr atomic.Pointer[error]
	js, err := jetstream.New(nb.nc,
		jetstream.WithPublishAsyncMaxPending(benchAsyncWindow),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, &err)
		}))
	if err != nil {
		b.Fatal(err)
	}
	publish := func() {
		n := ids.reserve(1)
		if _, err := js.PublishMsgAsync(c.message(n, ids), jetstream.WithExpectStream(events.StreamName), jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatalf("publish async: %v", err)
		}
	}
	wait := func() {
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(2 * time.Minute):
			b.Fatalf("%d async publishes still pending after 2 minutes", js.PublishAsyncPending())
		}
		if n := failed.Load(); n > 0 {
			b.Fatalf("%d async publishes failed, first: %v", n, *firstErr.Load())
		}
	}
	for range benchWarmupEvents / 5 { // the slowest case: keep its warm-up short
		publish()
	}
	wait()

	cpu := startCPU(b, nb.pid)
	start := time.Now()
	for b.Loop() {
		publish()
	}
	wait()
	elapsed := time.Since(start)
	cpu.report(b)

	nb.requireStored(b, ids.issued())
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}

// BenchmarkRawAtomicBatch is the atomic-batch baseline: batches of
// events.MaxBatch (1000) messages sent with nats.go core publish and
// committed with a request, the protocol of pkg/events publishAtomic, with
// benchAtomicInflight batches committing at once on one connection. One op
// is one batch of 1000 events.
func BenchmarkRawAtomicBatch(b *testing.B) {
	nb := startBenchNATS(b)
	c := benchCorpus(b)
	ids := newIDSource()
	batch := func() error {
		first := ids.reserve(events.MaxBatch)
		msgs := make([]*nats.Msg, events.MaxBatch)
		for i := range msgs {
			msgs[i] = c.message(first+uint64(i), ids)
		}
		return publishAtomic(nb.nc, msgs)
	}
	for range benchWarmupEvents / events.MaxBatch {
		if err := batch(); err != nil {
			b.Fatal(err)
		}
	}

	cpu := startCPU(b, nb.pid)
	start := time.Now()
	if err := runWorkers(b, benchAtomicInflight, func(int) error { return batch() }); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	cpu.report(b)

	nb.requireStored(b, ids.issued())
	b.ReportMetric(float64(b.N*events.MaxBatch)/elapsed.Seconds(), "events/s")
}

// BenchmarkRawSmallBatch is what one small append costs the server, one
// at a time: an atomic batch of n messages (atomic=n) against the same n
// messages as ordinary publishes, pipelined (plain=n). The atomic batch
// pays a fixed cost whatever its size: the server stages it in a file
// store of its own, created, fsynced and removed per batch. One op is one
// batch of n; "us/batch" is the mean time from the first publish to the
// last ack.
func BenchmarkRawSmallBatch(b *testing.B) {
	nb := startBenchNATS(b)
	c := benchCorpus(b)
	ids := newIDSource()
	js, err := jetstream.New(nb.nc)
	if err != nil {
		b.Fatal(err)
	}
	msgs := func(n int) []*nats.Msg {
		first := ids.reserve(n)
		ms := make([]*nats.Msg, n)
		for i := range ms {
			ms[i] = c.message(first+uint64(i), ids)
		}
		return ms
	}
	plain := func(ms []*nats.Msg) error {
		acks := make([]jetstream.PubAckFuture, len(ms))
		for i, m := range ms {
			f, err := js.PublishMsgAsync(m, jetstream.WithExpectStream(events.StreamName))
			if err != nil {
				return err
			}
			acks[i] = f
		}
		for _, f := range acks {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-time.After(30 * time.Second):
				return errors.New("no ack in 30 s")
			}
		}
		return nil
	}
	for _, n := range []int{1, 2, 5, 8, 12, 16, 28} {
		for _, mode := range []string{"atomic", "plain"} {
			b.Run(fmt.Sprintf("%s=%d", mode, n), func(b *testing.B) {
				send := plain
				if mode == "atomic" {
					send = func(ms []*nats.Msg) error { return publishAtomic(nb.nc, ms) }
				}
				for b.Loop() {
					if err := send(msgs(n)); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "us/batch")
			})
		}
	}
	nb.requireStored(b, ids.issued())
}

// BenchmarkIngestBatched100 measures the ingest binary under concurrent
// clients posting {"events": [...]} bodies of 100 events. One op is one
// request.
func BenchmarkIngestBatched100(b *testing.B) {
	clients := benchBatchedClients
	if s := os.Getenv("EVENTLINE_BENCH_CLIENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("EVENTLINE_BENCH_CLIENTS=%q: want a positive number of clients", s)
		}
		clients = n
	}
	benchIngest(b, clients, benchBatchedEvents)
}

// BenchmarkIngestSingle64 measures the ingest binary under 64 concurrent
// clients each posting one event per request. One op is one request.
func BenchmarkIngestSingle64(b *testing.B) {
	benchIngest(b, benchSingleClients, 1)
}

// BenchmarkIngestSingle8 is BenchmarkIngestSingle64 at a light load, 8
// clients: groups of a few single-event requests, which the group commit
// appends as pipelined plain publishes (CommitterConfig.PipelineMax).
func BenchmarkIngestSingle8(b *testing.B) {
	benchIngest(b, 8, 1)
}

// BenchmarkIngestAuth measures what NATS authentication and permissions
// cost ingest: the batched case against a server without accounts or
// users (auth=off), then against the shipped identities with ingest
// connecting as its own (auth=on). scripts/bench.sh auth runs it several
// times with -count 1, so the two alternate.
func BenchmarkIngestAuth(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  testenv.NATSConfig
	}{{"auth=off", testenv.NATSConfig{NoAuth: true}}, {"auth=on", testenv.NATSConfig{}}} {
		b.Run(c.name, func(b *testing.B) {
			benchIngestOn(b, startBenchNATSWith(b, c.cfg), benchBatchedClients, benchBatchedEvents)
		})
	}
}

// BenchmarkIngestIDTable measures what the idempotency table costs: the
// batched case with ingest.event_ids off (INGEST_IDEMPOTENCY_RETENTION=0:
// only the stream's window) and on (the default; every request's ids are
// client-chosen, so every batch is looked up and every id written).
// scripts/bench.sh ids runs it several times with -count 1, alternating.
func BenchmarkIngestIDTable(b *testing.B) {
	for _, c := range []struct{ name, retention string }{{"ids=off", "0"}, {"ids=on", "24h"}} {
		b.Run(c.name, func(b *testing.B) {
			benchIngestOn(b, startBenchNATS(b), benchBatchedClients, benchBatchedEvents, "INGEST_IDEMPOTENCY_RETENTION="+c.retention)
		})
	}
}

func benchIngest(b *testing.B, clients, perRequest int) {
	benchIngestOn(b, startBenchNATS(b), clients, perRequest)
}

// benchIngestOn runs the load against an ingest process started with env
// added to its environment.
func benchIngestOn(b *testing.B, nb benchNATS, clients, perRequest int, env ...string) {
	c := benchCorpus(b)
	ids := newIDSource()
	ing := startIngestProcess(b, nb.proc, env...)
	client := &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			MaxIdleConns:        clients,
			MaxIdleConnsPerHost: clients,
			MaxConnsPerHost:     clients,
			DisableCompression:  true,
		},
	}
	b.Cleanup(client.CloseIdleConnections)
	post := func() (time.Duration, error) {
		first := ids.reserve(perRequest)
		body := c.requestBody(first, perRequest, ids)
		req, err := http.NewRequest(http.MethodPost, ing.URL+"/v1/events", bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+ing.key)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, fmt.Errorf("POST /v1/events: %w", err)
		}
		respBody, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		took := time.Since(start)
		if err != nil {
			return 0, fmt.Errorf("read response: %w", err)
		}
		if resp.StatusCode != http.StatusAccepted {
			return 0, fmt.Errorf("POST /v1/events of %d events: status %d, want 202: %s", perRequest, resp.StatusCode, respBody)
		}
		return took, nil
	}
	if err := warmUp(clients, max(1, benchWarmupEvents/perRequest/clients), post); err != nil {
		ing.fatal(b, err)
	}

	warm, err := ing.batches()
	if err != nil {
		b.Fatal(err)
	}
	lat := newLatencies(clients)
	cpu := startCPU(b, nb.pid, ing.PID())
	start := time.Now()
	err = runWorkers(b, clients, func(w int) error {
		took, err := post()
		lat.add(w, took)
		return err
	})
	elapsed := time.Since(start)
	if err != nil {
		ing.fatal(b, err)
	}
	cpu.report(b)
	rss, err := ing.PeakRSSMiB()
	if err != nil {
		b.Fatal(err)
	}
	batches, err := ing.batches()
	if err != nil {
		b.Fatal(err)
	}
	batches = batches.since(warm)

	nb.requireStored(b, ids.issued())
	p50, p99 := lat.percentiles()
	b.ReportMetric(float64(b.N*perRequest)/elapsed.Seconds(), "events/s")
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(rss, "ingest-peak-rss-MiB")
	b.ReportMetric(batches.meanEvents(), "events/batch")
	b.ReportMetric(batches.meanMillis(), "batch-ms")
	b.ReportMetric(float64(clients), "clients")
}

// runWorkers runs fn on workers goroutines, one call per b.Loop iteration,
// until b.Loop ends or a call fails, and waits for every call to finish.
// It returns the first error.
func runWorkers(b *testing.B, workers int, fn func(worker int) error) error {
	var (
		work  = make(chan struct{})
		stop  = make(chan struct{})
		once  sync.Once
		first error
		wg    sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for range work {
				if err := fn(w); err != nil {
					once.Do(func() { first = err; close(stop) })
					return
				}
			}
		})
	}
loop:
	for b.Loop() {
		select {
		case work <- struct{}{}:
		case <-stop:
			break loop // the caller fails the benchmark
		}
	}
	close(work)
	wg.Wait()
	return first
}

// warmUp runs rounds calls of fn on each of workers goroutines.
func warmUp(workers, rounds int, fn func() (time.Duration, error)) error {
	var (
		once  sync.Once
		first error
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for range rounds {
				if _, err := fn(); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// latencies collects per-request latencies without sharing between workers.
type latencies struct{ perWorker [][]time.Duration }

func newLatencies(workers int) *latencies {
	return &latencies{perWorker: make([][]time.Duration, workers)}
}

func (l *latencies) add(worker int, d time.Duration) {
	l.perWorker[worker] = append(l.perWorker[worker], d)
}

func (l *latencies) percentiles() (p50, p99 time.Duration) {
	all := slices.Concat(l.perWorker...)
	if len(all) == 0 {
		return 0, 0
	}
	slices.Sort(all)
	at := func(q float64) time.Duration {
		return all[min(len(all)-1, int(math.Ceil(q*float64(len(all))))-1)]
	}
	return at(0.50), at(0.99)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// cpuUse measures where the machine's CPU went while a benchmark ran:
// this process (the load generator), the nats-server, the ingest process
// (when there is one) and everything else (kernel threads such as the file
// system journal, and whatever else runs on the machine), in cores.
type cpuUse struct {
	pids  []int // nats-server, then ingest
	start cpuSample
}

type cpuSample struct {
	total, busy uint64   // all CPUs, /proc/stat ticks
	procs       []uint64 // utime+stime ticks of self, then pids
	postgres    uint64   // utime+stime ticks of every postgres process (the id table's backends, the server's own)
}

func startCPU(b *testing.B, pids ...int) *cpuUse {
	b.Helper()
	c := &cpuUse{pids: pids}
	var err error
	if c.start, err = c.sample(); err != nil {
		b.Fatal(err)
	}
	return c
}

func (c *cpuUse) sample() (cpuSample, error) {
	var s cpuSample
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(fields) < 9 || fields[0] != "cpu" {
		return s, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	for i, f := range fields[1:9] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return s, fmt.Errorf("parse /proc/stat %q: %w", line, err)
		}
		s.total += v
		if i != 3 && i != 4 { // idle, iowait
			s.busy += v
		}
	}
	for _, pid := range append([]int{os.Getpid()}, c.pids...) {
		ticks, err := procTicks(pid)
		if err != nil {
			return s, err
		}
		s.procs = append(s.procs, ticks)
	}
	s.postgres = postgresTicks()
	return s, nil
}

// report adds the cores used since startCPU as metrics.
func (c *cpuUse) report(b *testing.B) {
	b.Helper()
	end, err := c.sample()
	if err != nil {
		b.Fatal(err)
	}
	// Ticks of one CPU over the interval: cores = ticks / perCPU.
	perCPU := float64(end.total-c.start.total) / float64(runtime.NumCPU())
	if perCPU <= 0 {
		return
	}
	cores := make([]float64, len(end.procs))
	var ours float64
	for i := range end.procs {
		cores[i] = float64(end.procs[i]-c.start.procs[i]) / perCPU
		ours += cores[i]
	}
	b.ReportMetric(cores[0], "loadgen-cores")
	b.ReportMetric(cores[1], "nats-cores")
	if len(cores) > 2 {
		b.ReportMetric(cores[2], "ingest-cores")
	}
	pg := float64(end.postgres-c.start.postgres) / perCPU
	b.ReportMetric(pg, "pg-cores")
	b.ReportMetric(max(0, float64(end.busy-c.start.busy)/perCPU-ours-pg), "other-cores")
}

// procTicks is utime+stime of pid, in clock ticks (proc(5)), as
// /proc/stat counts the machine's.
func procTicks(pid int) (uint64, error) {
	t, err := proccpu.Of(pid)
	return uint64(t / proccpu.ClockTick), err
}

// postgresTicks is the utime+stime ticks of every process named
// postgres: the backends of ingest's id table and the server's own
// processes, which would otherwise count as other work on the machine. A
// process that ends between two samples takes its ticks with it.
func postgresTicks() uint64 {
	dirs, _ := os.ReadDir("/proc")
	var ticks uint64
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile(filepath.Join("/proc", d.Name(), "comm")); err != nil || string(bytes.TrimSpace(comm)) != "postgres" {
			continue
		}
		if t, err := procTicks(pid); err == nil {
			ticks += t
		}
	}
	return ticks
}

// benchNATS is a nats-server process (with the shipped identities and
// permissions, or none) with the EVENTS stream provisioned by the admin,
// and one client connection configured as ingest configures its own, as
// identity ingest.
type benchNATS struct {
	proc *testenv.NATSProcess
	pid  int
	nc   *nats.Conn
	str  jetstream.Stream
}

func startBenchNATS(b *testing.B) benchNATS { return startBenchNATSWith(b, testenv.NATSConfig{}) }

func startBenchNATSWith(b *testing.B, c testenv.NATSConfig) benchNATS {
	b.Helper()
	p := testenv.StartNATSProcessWith(b, c)
	ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second)
	defer cancel()
	if _, err := stream.Ensure(ctx, p.Connect(b), stream.Config{}); err != nil {
		b.Fatal(err)
	}
	nc, err := stream.Connect(p.Client(natsauth.Ingest), natsauth.Ingest, "eventline-bench", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	str, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		b.Fatal(err)
	}
	return benchNATS{proc: p, pid: p.PID(), nc: nc, str: str}
}

// requireStored fails unless the stream holds exactly n messages.
func (nb benchNATS) requireStored(b *testing.B, n uint64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second)
	defer cancel()
	info, err := nb.str.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if info.State.Msgs != n {
		b.Fatalf("stream holds %d messages, %d were sent and acknowledged", info.State.Msgs, n)
	}
}

// publishAtomic sends msgs as one atomic batch (ADR-50) and checks the
// commit's ack, as pkg/events does.
func publishAtomic(nc *nats.Conn, msgs []*nats.Msg) error {
	id := nuid.Next()
	last := len(msgs) - 1
	for i, m := range msgs {
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i == last {
			m.Header.Set("Nats-Batch-Commit", "1")
			break
		}
		if err := nc.PublishMsg(m); err != nil {
			return fmt.Errorf("publish batch message %d: %w", i+1, err)
		}
	}
	resp, err := nc.RequestMsg(msgs[last], 30*time.Second)
	if err != nil {
		return fmt.Errorf("commit batch: %w", err)
	}
	var ack struct {
		jetstream.PubAck
		Batch string              `json:"batch"`
		Count int                 `json:"count"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return fmt.Errorf("decode batch ack %q: %w", resp.Data, err)
	}
	if ack.Error != nil {
		return fmt.Errorf("commit batch: %w", ack.Error)
	}
	if ack.Batch != id || ack.Count != len(msgs) {
		return fmt.Errorf("batch ack %q for %d messages, sent %q with %d", ack.Batch, ack.Count, id, len(msgs))
	}
	return nil
}

// ingestProcess is the ingest binary running as a child process against
// its own migrated database, with an API key of tenant benchTenant.
type ingestProcess struct {
	*testenv.Service
	key string
}

// startIngestProcess runs the ingest binary built from ./cmd/ingest, or
// EVENTLINE_INGEST_BIN when set (to measure another build), and waits until
// it is ready. The parent's environment passes through, so INGEST_BATCH_*
// and GOGC can be varied for experiments.
func startIngestProcess(b *testing.B, n testenv.NATSServer, env ...string) *ingestProcess {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
	defer cancel()
	dbURL := testenv.Database(b)
	pool, err := postgres.Open(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	_, key, err := apikey.NewStore(pool, 0).Create(ctx, apikey.CreateParams{Tenant: benchTenant, Scopes: []string{apikey.ScopeIngest}, Description: "benchmark"})
	pool.Close()
	if err != nil {
		b.Fatal(err)
	}
	bin := os.Getenv("EVENTLINE_INGEST_BIN")
	if bin == "" {
		bin = testenv.BuildBinary(b, "./cmd/ingest")
	}
	p := &ingestProcess{key: key, Service: testenv.StartService(b, bin,
		append(append(n.Env(natsauth.Ingest), "DATABASE_URL="+dbURL, "INGEST_RATE_LIMIT=0", "LOG_LEVEL=warn"), env...)...)}
	p.WaitReady(b)
	return p
}

// fatal fails the benchmark with err and the ingest process's output.
func (p *ingestProcess) fatal(b *testing.B, err error) {
	b.Helper()
	b.Fatalf("%v\ningest output:\n%s", err, p.Output())
}

// batchStats are the ingest process's group-commit batch counters.
type batchStats struct{ count, events, seconds float64 }

func (s batchStats) since(prev batchStats) batchStats {
	return batchStats{s.count - prev.count, s.events - prev.events, s.seconds - prev.seconds}
}

func (s batchStats) meanEvents() float64 { return s.events / max(s.count, 1) }
func (s batchStats) meanMillis() float64 { return 1000 * s.seconds / max(s.count, 1) }

// batches reads the batch size and duration histograms from /metrics.
func (p *ingestProcess) batches() (batchStats, error) {
	resp, err := http.Get(p.AdminURL + "/metrics")
	if err != nil {
		return batchStats{}, fmt.Errorf("read ingest metrics: %w", err)
	}
	defer resp.Body.Close()
	var s batchStats
	want := map[string]*float64{
		"eventline_ingest_batch_size_events_count":    &s.count,
		"eventline_ingest_batch_size_events_sum":      &s.events,
		"eventline_ingest_batch_duration_seconds_sum": &s.seconds,
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if dst := want[name]; ok && dst != nil {
			if *dst, err = strconv.ParseFloat(value, 64); err != nil {
				return batchStats{}, fmt.Errorf("parse %s: %w", sc.Text(), err)
			}
			delete(want, name)
		}
	}
	if err := sc.Err(); err != nil {
		return batchStats{}, fmt.Errorf("read ingest metrics: %w", err)
	}
	if len(want) > 0 {
		return batchStats{}, fmt.Errorf("ingest /metrics lacks %v", slices.Collect(maps.Keys(want)))
	}
	return s, nil
}

// idSource hands out unique event ids: a random per-run prefix and a
// counter, 32 characters like a UUID without dashes.
type idSource struct {
	prefix [16]byte
	next   atomic.Uint64
}

func newIDSource() *idSource {
	s := &idSource{}
	var r [8]byte
	_, _ = rand.Read(r[:])
	hex.Encode(s.prefix[:], r[:])
	return s
}

// reserve returns the first of n consecutive unused id numbers.
func (s *idSource) reserve(n int) uint64 { return s.next.Add(uint64(n)) - uint64(n) }

// issued is how many ids have been handed out.
func (s *idSource) issued() uint64 { return s.next.Load() }

func (s *idSource) append(dst []byte, n uint64) []byte {
	const digits = "0123456789abcdef"
	dst = append(dst, s.prefix[:]...)
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, digits[(n>>shift)&0xf])
	}
	return dst
}

// corpus is the benchmark's events, encoded once. Event number n of a run
// is template n mod len, with its own id spliced in.
type corpus struct{ templates []eventTemplate }

type eventTemplate struct {
	// input is the event as a producer posts it, split around the id.
	inHead, inTail []byte
	// stored is the normalized event as pkg/events puts it on the stream
	// (the message body), split around the id.
	storedHead, storedTail []byte
	subject                string
}

const idPlaceholder = "IDPLACEHOLDER"

var (
	corpusOnce sync.Once
	corpusVal  *corpus
	corpusErr  error
)

func benchCorpus(b *testing.B) *corpus {
	b.Helper()
	corpusOnce.Do(func() { corpusVal, corpusErr = newCorpus(1000) })
	if corpusErr != nil {
		b.Fatal(corpusErr)
	}
	return corpusVal
}

// newCorpus builds n realistic events of one tenant: cards created, moved,
// assigned and closed on boards, comments and completed steps on cards,
// each with a user creator, one or two parents and 100-200 bytes of
// particulars.
func newCorpus(n int) (*corpus, error) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	titles := []string{
		"Fix the login redirect loop on Safari", "Quarterly roadmap review", "Migrate billing to the new invoice API",
		"Onboarding checklist for the design team", "Slow dashboard query on large accounts", "Update the privacy policy",
		"Add CSV export to reports", "Flaky upload test on CI", "Dark mode for the mobile app", "Plan the customer offsite",
	}
	columns := []string{"Triage", "Not now", "In progress", "Review", "Done"}
	labels := []string{"bug", "feature", "p1", "p2", "design", "backend", "mobile"}
	excerpts := []string{
		"I can reproduce this on 17.2 with a fresh profile, looks like the cookie is dropped on redirect.",
		"Agreed, let's ship the smaller version first and follow up with the export settings next week.",
		"Pushed a fix to the branch, could someone from the mobile team double-check the layout on small screens?",
	}
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	user := func() events.Ref { return events.Ref{Type: "user", ID: "u" + strconv.Itoa(1+rng.IntN(500))} }
	c := &corpus{templates: make([]eventTemplate, n)}
	for i := range c.templates {
		board := events.Ref{Type: "board", ID: "b" + strconv.Itoa(1+rng.IntN(40))}
		card := events.Ref{Type: "card", ID: "c" + strconv.Itoa(1000+rng.IntN(90000))}
		title := titles[rng.IntN(len(titles))]
		e := events.Event{ID: idPlaceholder, Tenant: benchTenant, Creator: user(), OccurredAt: base.Add(time.Duration(i) * time.Millisecond)}
		var particulars any
		switch k := rng.IntN(6); k {
		case 0, 1, 2, 3:
			e.Eventable, e.Parents = card, []events.Ref{board}
			switch k {
			case 0:
				e.Action = "created"
				particulars = map[string]any{"title": title, "column": columns[0], "labels": []string{labels[rng.IntN(len(labels))]}, "position": rng.IntN(50)}
			case 1:
				from := rng.IntN(len(columns) - 1)
				e.Action = "moved"
				particulars = map[string]any{"title": title, "from_column": columns[from], "to_column": columns[from+1], "position": rng.IntN(50)}
			case 2:
				e.Action = "assigned"
				particulars = map[string]any{"title": title, "assignee": user(), "due_on": base.AddDate(0, 0, 1+rng.IntN(30)).Format(time.DateOnly)}
			default:
				e.Action = "closed"
				particulars = map[string]any{"title": title, "column": "Done", "previous_column": "Review", "closed_reason": "completed", "labels": []string{labels[rng.IntN(len(labels))], labels[rng.IntN(len(labels))]}}
			}
		case 4:
			e.Action = "created"
			e.Eventable = events.Ref{Type: "comment", ID: "cm" + strconv.Itoa(rng.IntN(1_000_000))}
			e.Parents = []events.Ref{card, board}
			particulars = map[string]any{"card_title": title, "excerpt": excerpts[rng.IntN(len(excerpts))], "mentions": []string{user().ID}}
		default:
			e.Action = "completed"
			e.Eventable = events.Ref{Type: "step", ID: "s" + strconv.Itoa(rng.IntN(1_000_000))}
			e.Parents = []events.Ref{card, board}
			total := 2 + rng.IntN(8)
			particulars = map[string]any{"card_title": title, "step_title": "Write the release notes", "completed_steps": 1 + rng.IntN(total), "total_steps": total}
		}
		p, err := json.Marshal(particulars)
		if err != nil {
			return nil, err
		}
		e.Particulars = p
		in, err := json.Marshal(struct {
			ID          string          `json:"id"`
			Tenant      string          `json:"tenant"`
			Action      string          `json:"action"`
			Eventable   events.Ref      `json:"eventable"`
			Creator     events.Ref      `json:"creator"`
			Parents     []events.Ref    `json:"parents"`
			Particulars json.RawMessage `json:"particulars"`
			OccurredAt  string          `json:"occurred_at"`
		}{e.ID, e.Tenant, e.Action, e.Eventable, e.Creator, e.Parents, e.Particulars, e.OccurredAt.Format(time.RFC3339Nano)})
		if err != nil {
			return nil, err
		}
		if err := e.Normalize(time.Now()); err != nil {
			return nil, fmt.Errorf("corpus event %d: %w", i, err)
		}
		stored, err := e.MarshalInput() // the stream body, as pkg/events writes it
		if err != nil {
			return nil, err
		}
		subject, err := events.Subject(e.Tenant, e.Eventable.Type, e.Action)
		if err != nil {
			return nil, err
		}
		t := eventTemplate{subject: subject}
		var ok bool
		if t.inHead, t.inTail, ok = bytes.Cut(in, []byte(idPlaceholder)); !ok {
			return nil, fmt.Errorf("corpus event %d: no id placeholder in %s", i, in)
		}
		if t.storedHead, t.storedTail, ok = bytes.Cut(stored, []byte(idPlaceholder)); !ok {
			return nil, fmt.Errorf("corpus event %d: no id placeholder in %s", i, stored)
		}
		c.templates[i] = t
	}
	return c, nil
}

// requestBody is a POST /v1/events body with events first..first+n-1:
// one event, or {"events": [...]}.
func (c *corpus) requestBody(first uint64, n int, ids *idSource) []byte {
	body := make([]byte, 0, n*400+16)
	if n > 1 {
		body = append(body, `{"events":[`...)
	}
	for k := range uint64(n) {
		if k > 0 {
			body = append(body, ',')
		}
		t := &c.templates[(first+k)%uint64(len(c.templates))]
		body = append(body, t.inHead...)
		body = ids.append(body, first+k)
		body = append(body, t.inTail...)
	}
	if n > 1 {
		body = append(body, "]}"...)
	}
	return body
}

// message is event n as pkg/events publishes it: subject, body, Nats-Msg-Id
// and Content-Type.
func (c *corpus) message(n uint64, ids *idSource) *nats.Msg {
	t := &c.templates[n%uint64(len(c.templates))]
	body := make([]byte, 0, len(t.storedHead)+32+len(t.storedTail))
	body = append(body, t.storedHead...)
	body = ids.append(body, n)
	body = append(body, t.storedTail...)
	id := string(body[len(t.storedHead) : len(t.storedHead)+32])
	m := nats.NewMsg(t.subject)
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, events.MsgID(benchTenant, id))
	m.Header.Set("Content-Type", "application/json")
	return m
}

// TestBenchCorpus checks that the benchmark's events are valid, of the
// intended size, and identical on both paths.
func TestBenchCorpus(t *testing.T) {
	t.Parallel()
	c, err := newCorpus(1000)
	if err != nil {
		t.Fatal(err)
	}
	ids := newIDSource()
	now := time.Now()
	var particulars int
	for n := range uint64(len(c.templates)) {
		in := c.requestBody(n, 1, ids)
		e, err := events.DecodeForTenant(in, 0, benchTenant, now)
		if err == nil {
			err = e.Normalize(now)
		}
		if err != nil {
			t.Fatalf("event %d %s: %v", n, in, err)
		}
		if len(e.Parents) < 1 || len(e.Parents) > 2 {
			t.Fatalf("event %d has %d parents", n, len(e.Parents))
		}
		if l := len(e.Particulars); l < 80 || l > 220 {
			t.Fatalf("event %d particulars are %d bytes: %s", n, l, e.Particulars)
		}
		particulars += len(e.Particulars)
		m := c.message(n, ids)
		var stored events.Event
		if err := json.Unmarshal(m.Data, &stored); err != nil {
			t.Fatal(err)
		}
		if stored.ID != e.ID || m.Header.Get(jetstream.MsgIDHeader) != events.MsgID(benchTenant, e.ID) ||
			stored.Action != e.Action || stored.Eventable != e.Eventable || !slices.Equal(stored.Parents, e.Parents) ||
			!bytes.Equal(stored.Particulars, e.Particulars) || !stored.OccurredAt.Equal(e.OccurredAt) {
			t.Fatalf("event %d differs between the HTTP body %s and the stream message %s", n, in, m.Data)
		}
	}
	t.Logf("mean particulars %d bytes, batch body of 100 events %d bytes", particulars/len(c.templates), len(c.requestBody(0, 100, ids)))
}
