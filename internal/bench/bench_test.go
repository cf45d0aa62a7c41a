package bench_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/bench"
	"github.com/eventline/eventline/internal/dev"
	"github.com/eventline/eventline/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestBenchObservesEveryEvent runs a short, slow bench against an
// in-process `eventline dev` and requires that every acknowledged event is
// seen in the timeline and at the webhook receiver (the measurement is
// complete, whatever the numbers).
func TestBenchObservesEveryEvent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	ready := make(chan dev.Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- dev.Run(ctx, dev.Options{Dir: dir, HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DatabaseURL: testenv.Database(t),
			Stdout: io.Discard, Log: slog.New(slog.DiscardHandler), Ready: func(i dev.Info) { ready <- i }})
	}()
	var info dev.Info
	select {
	case info = <-ready:
	case err := <-done:
		t.Fatalf("eventline dev: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("eventline dev not ready within a minute")
	}
	res, err := bench.Run(ctx, bench.Options{IngestURL: info.URL, ProjectorURL: info.URL, WebhookerURL: info.URL, Key: info.Key,
		Rate: 50, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond, Workers: 8, Burst: time.Second})
	require.NoError(t, err)
	require.Zero(t, res.Errors)
	require.Positive(t, res.Acked, "2s at 50/s acknowledges events (how many depends on the machine)")
	require.Zero(t, res.ToTimeline.Missing, "every acknowledged event reaches the timeline")
	require.Zero(t, res.ToWebhook.Missing, "every acknowledged event reaches the receiver")
	require.Equal(t, res.Acked, res.ToTimeline.N)
	require.Positive(t, res.BurstEvents)
	require.Positive(t, res.BurstCatchUp)
	cancel()
	require.NoError(t, <-done)
}
