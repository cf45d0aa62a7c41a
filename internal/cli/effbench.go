package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/effbench"
	"github.com/eventline/eventline/internal/postgres"
)

// efficiencyCmd is `eventline bench efficiency`: CPU per event of each of
// the pipeline's processes at fixed rates (BENCHMARKS.md, "Efficiency").
func efficiencyCmd(ctx context.Context, args []string, stdout io.Writer) error {
	var o effbench.Options
	var rates, jsonOut string
	set := config.New("eventline bench efficiency")
	set.String(&o.BinDir, "bin-dir", "BENCH_BIN_DIR", "", "directory with eventline, ingest, projector, notifier and webhooker (make build); default: this binary's")
	set.String(&o.NATSServer, "nats-server", "NATS_SERVER_BIN", "", "nats-server >= 2.12 (make tools); default $(go env GOPATH)/bin/nats-server")
	set.String(&o.DatabaseURL, "database-url", "DATABASE_URL", postgres.DefaultURL, "Postgres server; the benchmark creates a database of its own there and drops it")
	set.String(&rates, "rates", "BENCH_RATES", "50,200,1000,5000", "events per second, one event per request, comma-separated")
	set.Duration(&o.Duration, "duration", "BENCH_DURATION", 20*time.Second, "measured length of each of a rate's two windows: CPU with no timeline reads, then latency with the timeline read every --poll")
	set.Duration(&o.Warmup, "warmup", "BENCH_WARMUP", 3*time.Second, "unmeasured lead-in of each rate")
	set.Duration(&o.Idle, "idle", "BENCH_IDLE", 10*time.Second, "length of the idle and poller-only phases")
	set.Duration(&o.Floor, "floor", "BENCH_FLOOR", 4*time.Second, "length of each raw-floor measurement")
	set.Duration(&o.Poll, "poll", "BENCH_POLL", 2*time.Millisecond, "how often the activity feed is read in each rate's latency window and the poller-only phase (as eventline bench); the CPU window reads nothing")
	set.Int(&o.Runs, "runs", "BENCH_RUNS", 3, "runs; the report gives medians")
	set.String(&jsonOut, "json", "BENCH_JSON_OUT", "", "also write every run's raw figures to this file")
	if err := parse(set, args); err != nil {
		return err
	}
	for _, r := range strings.Split(rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n <= 0 {
			return usageError{fmt.Sprintf("--rates: %q is not a positive number", r)}
		}
		o.Rates = append(o.Rates, n)
	}
	if o.BinDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.BinDir = filepath.Dir(exe)
	}
	if o.NATSServer == "" {
		gopath, err := exec.CommandContext(ctx, "go", "env", "GOPATH").Output()
		if err != nil {
			return fmt.Errorf("no --nats-server, and go env GOPATH: %w", err)
		}
		o.NATSServer = filepath.Join(strings.TrimSpace(string(gopath)), "bin", "nats-server")
	}
	o.Progress = os.Stderr
	res, err := effbench.Run(ctx, o)
	if err != nil {
		return err
	}
	if jsonOut != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonOut, b, 0o600); err != nil {
			return err
		}
	}
	effbench.Report(stdout, o, res)
	return nil
}
