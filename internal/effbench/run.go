package effbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/eventline/eventline/internal/bench"
	"github.com/eventline/eventline/internal/dev"
	"github.com/eventline/eventline/internal/proccpu"
)

// Options configure a run.
type Options struct {
	BinDir      string // eventline, ingest, projector, notifier, webhooker (make build)
	NATSServer  string // nats-server >= 2.12
	DatabaseURL string // the server; the benchmark creates and drops a database of its own
	Rates       []int  // events/s, one event per request
	Duration    time.Duration
	Warmup      time.Duration
	Idle        time.Duration // length of the idle and poller-only phases
	Floor       time.Duration // length of each raw-floor measurement
	Runs        int
	Poll        time.Duration // the timeline poll interval of the latency measurement
	Seed        int           // events recorded before the first phase; default SeedEvents
	Progress    io.Writer
}

// Phase is one measured phase of one run.
type Phase struct {
	Name     string // "idle", "poller", or the rate
	Rate     int
	Events   int // acknowledged in the measured window
	Achieved float64
	Errors   int
	Polls    int // timeline reads in the window whose CPU is measured (none in a rate's)
	Usage    Usage
	Timeline bench.Latency
	Webhook  bench.Latency
}

// Floor is one raw floor: Ops sequential operations, the CPU of the
// client (this process) and of the server (nats-server, the Postgres
// backend; none for HTTP, whose server is in this process).
type Floor struct {
	Name           string
	Ops            int
	Client, Server time.Duration
}

// PerOp is client+server CPU per operation in µs.
func (f Floor) PerOp() float64 { return PerEvent(f.Client+f.Server, f.Ops) }

// Result is every run.
type Result struct {
	Runs   [][]Phase
	Floors [][]Floor
}

// Run starts the pipeline as separate processes, measures the raw floors,
// an idle and a poller-only phase and every rate, Runs times, and stops
// everything again.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	dir, err := os.MkdirTemp("", "eventline-effbench-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	s, err := startSystem(ctx, o, dir)
	if err != nil {
		return Result{}, err
	}
	defer s.close(ctx)
	conn, err := connect(ctx, s.dbURL, "effbench")
	if err != nil {
		return Result{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	floorNATS, floorURL, err := natsServer(ctx, "nats-floor", o.NATSServer, dir, nil)
	if err != nil {
		return Result{}, err
	}
	defer floorNATS.stop()

	if o.Seed <= 0 {
		o.Seed = SeedEvents
	}
	if err := seed(ctx, s, o.Seed); err != nil {
		return Result{}, err
	}
	var res Result
	for run := 1; run <= o.Runs; run++ {
		fmt.Fprintf(o.Progress, "run %d/%d: raw floors\n", run, o.Runs)
		floors, err := measureFloors(ctx, o, s, floorNATS, floorURL)
		if err != nil {
			return res, err
		}
		res.Floors = append(res.Floors, floors)
		var phases []Phase
		// autovacuum is off on the benchmark machine: fresh statistics
		// before every phase keep the plans those of a maintained table.
		if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
			return res, err
		}
		for _, name := range []string{"idle", "poller"} {
			fmt.Fprintf(o.Progress, "run %d/%d: %s %s\n", run, o.Runs, name, o.Idle)
			p, err := idlePhase(ctx, o, s, conn, name == "poller")
			if err != nil {
				return res, err
			}
			phases = append(phases, p)
		}
		for _, rate := range o.Rates {
			if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
				return res, err
			}
			fmt.Fprintf(o.Progress, "run %d/%d: %d events/s for %s\n", run, o.Runs, rate, o.Duration)
			p, err := ratePhase(ctx, o, s, conn, rate)
			if err == nil {
				err = s.exited()
			}
			if err != nil {
				return res, err
			}
			fmt.Fprintf(o.Progress, "  %d events (%.0f/s, %d errors), %.0f µs CPU/event, timeline p99 %s, webhook p99 %s\n",
				p.Events, p.Achieved, p.Errors, PerEvent(p.Usage.Pipeline(), p.Events), p.Timeline.P99, p.Webhook.P99)
			phases = append(phases, p)
		}
		res.Runs = append(res.Runs, phases)
	}
	return res, nil
}

func connect(ctx context.Context, dbURL, app string) (*pgx.Conn, error) {
	u, err := withApp(dbURL, app)
	if err != nil {
		return nil, err
	}
	return pgx.Connect(ctx, u)
}

// ratePhase drives the pipeline at rate twice: a window that measures CPU
// while nothing reads the timeline, then a window that measures the
// latencies while the timeline is read every o.Poll. A read of the
// newest page costs the projector and Postgres more than an event does,
// and read every 2 ms they take a core of this machine, so measured in
// one window they would be most of what the CPU figures show.
func ratePhase(ctx context.Context, o Options, s *system, conn *pgx.Conn, rate int) (Phase, error) {
	var first, last Sample
	var serr error
	window := func(open bool) {
		sm, err := s.sample(ctx, conn)
		if err != nil && serr == nil {
			serr = err
		}
		if open {
			first = sm
		} else {
			last = sm
		}
	}
	run := bench.Options{
		IngestURL: s.svcs["ingest"].url, ProjectorURL: s.svcs["projector"].url, WebhookerURL: s.svcs["webhooker"].url,
		Key: s.key, Rate: rate, Duration: o.Duration, Warmup: o.Warmup, Poll: o.Poll,
	}
	cpu := run
	cpu.NoTimeline, cpu.Window = true, window
	r, err := bench.Run(ctx, cpu)
	if err == nil {
		err = serr
	}
	if err != nil {
		return Phase{}, err
	}
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil { // as before every phase: see Run
		return Phase{}, err
	}
	lat, err := bench.Run(ctx, run)
	if err != nil {
		return Phase{}, err
	}
	return Phase{Name: fmt.Sprint(rate), Rate: rate, Events: r.Acked, Achieved: r.Achieved, Errors: r.Errors + lat.Errors,
		Polls: r.Polls, Usage: Delta(first, last), Timeline: lat.ToTimeline, Webhook: lat.ToWebhook}, nil
}

// idlePhase measures the pipeline with no events; with poll, while the
// timeline is read as the latency measurement reads it (every o.Poll), so
// that what the measurement itself costs can be told apart.
func idlePhase(ctx context.Context, o Options, s *system, conn *pgx.Conn, poll bool) (Phase, error) {
	name := "idle"
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	var polls, counting atomic.Int64
	if poll {
		name = "poller"
		go func() {
			defer close(done)
			c := &http.Client{}
			t := time.NewTicker(o.Poll)
			defer t.Stop()
			for {
				select {
				case <-pctx.Done():
					return
				case <-t.C:
				}
				polls.Add(counting.Load())
				req, _ := http.NewRequestWithContext(pctx, http.MethodGet, s.svcs["projector"].url+"/v1/activity?limit=200", nil)
				req.Header.Set("Authorization", "Bearer "+s.key)
				if resp, err := c.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			}
		}()
	} else {
		close(done)
	}
	time.Sleep(time.Second) // the poller's connections are open before the window
	a, err := s.sample(ctx, conn)
	if err == nil {
		counting.Store(1)
		time.Sleep(o.Idle)
		counting.Store(0)
		var b Sample
		b, err = s.sample(ctx, conn)
		stop()
		<-done
		return Phase{Name: name, Polls: int(polls.Load()), Usage: Delta(a, b)}, err
	}
	stop()
	<-done
	return Phase{}, err
}

// measureFloors measures the raw floor of one event's work, sequentially,
// each for o.Floor: a plain durable JetStream publish (PubAck after the
// fsync) on a nats-server of its own with the same settings, one HTTP
// request with one event to a handler that only reads it and answers 202,
// and one single-row INSERT (its own transaction) into the benchmark's
// database.
func measureFloors(ctx context.Context, o Options, s *system, floorNATS *proc, floorURL string) ([]Floor, error) {
	gen := dev.NewDemoGenerator(uint64(time.Now().UnixNano()))
	body, err := json.Marshal(gen.Next(1)[0])
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	// timed runs op back to back for o.Floor, then once at each of the
	// paced rates (PacedFloorRate).
	timed := func(name string, server int, op func() error) ([]Floor, error) {
		var out []Floor
		for _, pace := range append([]int{0}, pacedRates(o.Rates)...) {
			f, err := timedAt(ctx, o.Floor, self, server, FloorName(name, pace), pace, op)
			if err != nil {
				return nil, err
			}
			out = append(out, f)
		}
		return out, nil
	}
	var floors []Floor

	// A plain durable publish.
	nc, err := nats.Connect(floorURL)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return nil, err
	}
	if _, err := js.AddStream(&nats.StreamConfig{Name: "FLOOR", Subjects: []string{"floor.>"}, Storage: nats.FileStorage}); err != nil {
		return nil, err
	}
	f, err := timed("publish", floorNATS.pid(), func() error { _, err := js.Publish("floor.bench.card", body); return err })
	if err != nil {
		return nil, err
	}
	floors = append(floors, f...)

	// One HTTP request to a trivial handler (client and server here).
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	hc := &http.Client{}
	target := "http://" + l.Addr().String() + "/v1/events"
	f, err = timed("http", 0, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+s.key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	})
	if err != nil {
		return nil, err
	}
	floors = append(floors, f...)

	// One single-row INSERT, autocommitted (synchronous_commit as the
	// services have it).
	pc, err := connect(ctx, s.dbURL, "effbench-floor")
	if err != nil {
		return nil, err
	}
	defer pc.Close(context.WithoutCancel(ctx))
	if _, err := pc.Exec(ctx, `CREATE TABLE IF NOT EXISTS effbench_floor (id bigserial PRIMARY KEY, tenant text NOT NULL,
		event_id text NOT NULL, body jsonb NOT NULL, at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, err
	}
	var backend int32
	if err := pc.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return nil, err
	}
	n := 0
	f, err = timed("insert", int(backend), func() error {
		n++
		_, err := pc.Exec(ctx, "INSERT INTO effbench_floor (tenant, event_id, body) VALUES ($1, $2, $3)", "bench", fmt.Sprint(n), body)
		return err
	})
	if err != nil {
		return nil, err
	}
	return append(floors, f...), nil
}

// PacedFloorRate is the highest rate at which the floors are also measured
// paced, one operation at a time at that rate: at low rates every event
// arrives alone into processes that have gone idle, and waking them is
// part of what any implementation pays (BENCHMARKS.md "Where the CPU goes at
// low rates"); operations back to back never go idle.
const PacedFloorRate = 200

func pacedRates(rates []int) []int {
	var out []int
	for _, r := range rates {
		if r <= PacedFloorRate {
			out = append(out, r)
		}
	}
	return out
}

// FloorName names the floor of operation op measured at pace operations a
// second (0: back to back).
func FloorName(op string, pace int) string {
	if pace == 0 {
		return op
	}
	return fmt.Sprintf("%s@%d", op, pace)
}

// timedAt runs op for d, back to back (pace 0) or pace times a second, and
// returns the CPU it cost this process (the client) and the process
// server (none if 0).
func timedAt(ctx context.Context, d time.Duration, self, server int, name string, pace int, op func() error) (Floor, error) {
	c0, _ := proccpu.Of(self)
	var s0 time.Duration
	if server > 0 {
		s0, _ = proccpu.Of(server)
	}
	f := Floor{Name: name}
	var tick *time.Ticker
	if pace > 0 {
		tick = time.NewTicker(time.Second / time.Duration(pace))
		defer tick.Stop()
	}
	for end := time.Now().Add(d); time.Now().Before(end); f.Ops++ {
		if tick != nil {
			select {
			case <-ctx.Done():
				return f, ctx.Err()
			case <-tick.C:
			}
		}
		if err := op(); err != nil {
			return f, fmt.Errorf("floor %s: %w", name, err)
		}
	}
	c1, err := proccpu.Of(self)
	if err != nil {
		return f, err
	}
	f.Client = c1 - c0
	if server > 0 {
		s1, err := proccpu.Of(server)
		if err != nil {
			return f, err
		}
		f.Server = s1 - s0
	}
	return f, nil
}

// SeedEvents is the default backlog recorded before the first phase: enough that
// the tables the consumers read (watches, inboxes, the timeline) are of a
// size at which the planner picks the plans of a table in use, once
// ANALYZE has run (autovacuum is off on the benchmark machine; with a few
// hundred rows behind the statistics, the notifier's read of the watches
// table was planned as a sequential scan that read ~1,300 rows per event
// by the end of a phase), and the poller-only phase reads full pages of
// the activity feed, as the timeline poll of the rate phases does.
const SeedEvents = 5000

// seed records n events in batches of 100 and waits until the last is
// readable.
func seed(ctx context.Context, s *system, n int) error {
	gen := dev.NewDemoGenerator(uint64(time.Now().UnixNano()))
	var batch []map[string]any
	for done := 0; done < n; done += len(batch) {
		batch = gen.Next(100)
		if err := postBatch(ctx, s, batch); err != nil {
			return err
		}
	}
	last := batch[len(batch)-1]["id"].(string)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.svcs["projector"].url+"/v1/events/"+last, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+s.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
	}
	return fmt.Errorf("seed: event %s not in the timeline after 30s", last)
}

func postBatch(ctx context.Context, s *system, batch []map[string]any) error {
	b, err := json.Marshal(map[string]any{"events": batch})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.svcs["ingest"].url+"/v1/events", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("seed: ingest answered %d", resp.StatusCode)
	}
	return nil
}
