package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/eventline/eventline/internal/bench"
	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/dev"
	"github.com/eventline/eventline/internal/postgres"
)

func benchCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "efficiency" {
		return efficiencyCmd(ctx, args[1:], stdout)
	}
	var o bench.Options
	var url, dbURL string
	var asJSON bool
	set := config.New("eventline bench")
	set.String(&url, "url", "EVENTLINE_URL", "", "base URL of a running installation (one ingress); empty starts `eventline dev` in this process")
	set.String(&o.IngestURL, "ingest-url", "EVENTLINE_INGEST_URL", "", "ingest's base URL, when the services are not behind one address")
	set.String(&o.ProjectorURL, "projector-url", "EVENTLINE_PROJECTOR_URL", "", "the projector's base URL")
	set.String(&o.WebhookerURL, "webhooker-url", "EVENTLINE_WEBHOOKER_URL", "", "the webhooker's base URL")
	set.String(&o.Key, "key", "EVENTLINE_KEY", "", "API key with ingest, read and admin scopes (with --url)")
	set.String(&dbURL, "database-url", "DATABASE_URL", "", "Postgres for the in-process installation (as for eventline dev)")
	set.Int(&o.Rate, "rate", "BENCH_RATE", 1000, "events per second in the latency phase, one event per request")
	set.Duration(&o.Duration, "duration", "BENCH_DURATION", 30*time.Second, "measured length of the latency phase")
	set.Duration(&o.Warmup, "warmup", "BENCH_WARMUP", 3*time.Second, "unmeasured lead-in")
	set.Int(&o.Workers, "workers", "BENCH_WORKERS", 64, "concurrent requests")
	set.Duration(&o.Poll, "poll", "BENCH_POLL", 2*time.Millisecond, "how often the activity feed is read to see new events")
	set.Duration(&o.Burst, "burst", "BENCH_BURST", 10*time.Second, "length of the max-throughput phase (batches of 100); 0 skips it")
	set.String(&o.ReceiverAddr, "receiver-addr", "BENCH_RECEIVER_ADDR", "127.0.0.1:0", "where the local webhook receiver listens")
	set.String(&o.ReceiverURL, "receiver-url", "BENCH_RECEIVER_URL", "", "the receiver's URL as the webhooker reaches it (default http://<receiver-addr>)")
	set.Bool(&asJSON, "json", "BENCH_JSON", false, "print the result as JSON")
	if err := parse(set, args); err != nil {
		return err
	}
	for _, p := range []*string{&o.IngestURL, &o.ProjectorURL, &o.WebhookerURL} {
		if *p == "" {
			*p = url
		}
	}
	run := func() (bench.Result, error) { return bench.Run(ctx, o) }
	if url == "" && (o.IngestURL == "" || o.ProjectorURL == "" || o.WebhookerURL == "") {
		run = func() (bench.Result, error) { return inProcess(ctx, o, dbURL, stdout) }
	} else if o.Key == "" {
		return usageError{"--key is required with --url"}
	}
	res, err := run()
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printResult(stdout, o, res)
	return nil
}

// inProcess runs the benchmark against `eventline dev` started in this
// process with its state in a temporary directory and, unless dbURL is
// given, a database of its own on localhost:5432 that is dropped
// afterwards (a private cluster in the temporary directory when there is
// no server there).
func inProcess(ctx context.Context, o bench.Options, dbURL string, stdout io.Writer) (bench.Result, error) {
	dir, err := os.MkdirTemp("", "eventline-bench-")
	if err != nil {
		return bench.Result{}, err
	}
	defer os.RemoveAll(dir)
	if dbURL == "" {
		name := fmt.Sprintf("eventline_bench_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6)
		u := strings.Replace(postgres.DefaultURL, "/eventline?", "/"+name+"?", 1)
		if err := postgres.EnsureDatabase(ctx, u); err == nil {
			dbURL = u
			defer func() {
				if err := postgres.DropDatabase(context.WithoutCancel(ctx), u); err != nil {
					fmt.Fprintf(stdout, "could not drop the bench database %s: %v\n", name, err)
				}
			}()
		}
	}
	devCtx, stop := context.WithCancel(ctx)
	defer stop()
	ready := make(chan dev.Info, 1)
	devErr := make(chan error, 1)
	go func() {
		devErr <- dev.Run(devCtx, dev.Options{Dir: dir, HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DatabaseURL: dbURL,
			Stdout: io.Discard, Log: slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			Ready: func(i dev.Info) { ready <- i }})
	}()
	var info dev.Info
	select {
	case info = <-ready:
	case err := <-devErr:
		return bench.Result{}, fmt.Errorf("start eventline dev: %w", err)
	}
	fmt.Fprintf(stdout, "benchmarking eventline dev in this process (%s, state in %s)\n", info.URL, dir)
	o.IngestURL, o.ProjectorURL, o.WebhookerURL, o.Key = info.URL, info.URL, info.URL, info.Key
	res, err := bench.Run(ctx, o)
	stop()
	if derr := <-devErr; derr != nil && err == nil {
		err = fmt.Errorf("eventline dev: %w", derr)
	}
	return res, err
}

func printResult(w io.Writer, o bench.Options, r bench.Result) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintf(w, "latency phase: target %d events/s for %s, one event per request, %d workers\n", r.Rate, o.Duration, o.Workers)
	fmt.Fprintf(w, "  acknowledged  %d (%.0f events/s), %d errors\n", r.Acked, r.Achieved, r.Errors)
	fmt.Fprintf(w, "  %-22s %10s %10s %10s %10s %8s\n", "", "p50", "p90", "p99", "max", "missing")
	for _, row := range []struct {
		name string
		l    bench.Latency
	}{{"request -> 202", r.AckLatency}, {"202 -> timeline", r.ToTimeline}, {"202 -> first webhook", r.ToWebhook}} {
		fmt.Fprintf(w, "  %-22s %10s %10s %10s %10s %8d\n", row.name, ms(row.l.P50), ms(row.l.P90), ms(row.l.P99), ms(row.l.Max), row.l.Missing)
	}
	fmt.Fprintf(w, "  (the timeline is polled every %s, which bounds that column's resolution)\n", r.PollInterval)
	if r.BurstEvents > 0 {
		fmt.Fprintf(w, "burst phase: %d events in batches of 100 = %.0f events/s through ingest; consumers caught up %s after the burst\n",
			r.BurstEvents, r.BurstPerSecond, ms(r.BurstCatchUp))
	}
}
