package effbench_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/effbench"
	"github.com/eventline/eventline/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestRunAttributesEveryProcess runs a short benchmark of the real
// binaries and requires CPU from every process and every service's
// Postgres backends, events in every rate, and every raw floor measured.
func TestRunAttributesEveryProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole pipeline")
	}
	var bin string
	for _, cmd := range []string{"./cmd/eventline", "./cmd/ingest", "./cmd/projector", "./cmd/notifier", "./cmd/webhooker"} {
		bin = testenv.BuildBinary(t, cmd)
	}
	o := effbench.Options{
		BinDir: filepath.Dir(bin), NATSServer: testenv.NATSServerBinary(t), DatabaseURL: testenv.Database(t),
		Rates: []int{100}, Duration: 3 * time.Second, Warmup: time.Second, Idle: time.Second, Floor: 300 * time.Millisecond,
		Runs: 1, Poll: 10 * time.Millisecond, Seed: 200,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := effbench.Run(ctx, o)
	require.NoError(t, err)
	require.Len(t, res.Runs, 1)
	var rate *effbench.Phase
	for i, p := range res.Runs[0] {
		if p.Name == "100" {
			rate = &res.Runs[0][i]
		}
	}
	require.NotNil(t, rate, "%+v", res.Runs[0])
	require.Greater(t, rate.Events, 100)
	require.Zero(t, rate.Polls, "the CPU window must not read the timeline")
	require.Positive(t, rate.Timeline.N, "no 202 → timeline latency measured")
	require.Zero(t, rate.Timeline.Missing, "events never seen in the timeline")
	require.Positive(t, rate.Webhook.N, "no 202 → webhook latency measured")
	for _, g := range []string{"ingest", "nats-server", "projector", "notifier", "webhooker", "pg:ingest", "pg:projector", "pg:webhooker"} {
		require.Positive(t, rate.Usage.CPU[g], "no CPU attributed to %s: %v", g, rate.Usage.CPU)
	}
	// Each operation back to back and paced at the rate (100/s for 300 ms).
	var names []string
	for _, f := range res.Floors[0] {
		names = append(names, f.Name)
		require.Positive(t, f.Ops, f.Name)
		if strings.Contains(f.Name, "@") {
			// ~30 operations may cost less than one clock tick (10 ms) of
			// CPU, the resolution of /proc/<pid>/stat: only the pace is
			// checked.
			require.LessOrEqual(t, f.Ops, 31, "%s was not paced at 100/s", f.Name)
		} else {
			require.Positive(t, f.Client, f.Name)
		}
	}
	require.ElementsMatch(t, []string{"publish", "publish@100", "http", "http@100", "insert", "insert@100"}, names)
	var out bytes.Buffer
	effbench.Report(&out, o, res)
	require.Contains(t, out.String(), "| 100 ev/s |")
	require.True(t, strings.Contains(out.String(), "Floor of one event"), out.String())
	require.Contains(t, out.String(), "measured while nothing reads the timeline")
	require.Contains(t, out.String(), "at 100/s.")
}
