package effbench

import (
	"testing"
	"time"
)

func TestDelta(t *testing.T) {
	t0 := time.Unix(100, 0)
	a := Sample{At: t0, CPU: map[string]map[int]time.Duration{
		"ingest":       {10: 2 * time.Second},
		"pg:projector": {20: time.Second, 21: 500 * time.Millisecond},
	}}
	b := Sample{At: t0.Add(4 * time.Second), CPU: map[string]map[int]time.Duration{
		"ingest": {10: 3 * time.Second},
		// 21 exited (lost), 22 started (counts whole).
		"pg:projector": {20: 1500 * time.Millisecond, 22: 200 * time.Millisecond},
	}}
	u := Delta(a, b)
	if u.Wall != 4*time.Second {
		t.Errorf("wall %v", u.Wall)
	}
	if u.CPU["ingest"] != time.Second || u.CPU["pg:projector"] != 700*time.Millisecond {
		t.Errorf("cpu %v", u.CPU)
	}
	if c := Cores(u.CPU["ingest"], u.Wall); c != 0.25 {
		t.Errorf("cores %v, want 0.25", c)
	}
	if p := PerEvent(u.CPU["ingest"], 4000); p != 250 {
		t.Errorf("per event %v µs, want 250", p)
	}
	if PerEvent(time.Second, 0) != 0 || Cores(time.Second, 0) != 0 {
		t.Error("zero divisor")
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := Median(c.xs); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}

func TestPipelineLeavesOutTheLoadGeneratorAndSharedPostgres(t *testing.T) {
	u := Usage{CPU: map[string]time.Duration{
		"ingest": time.Second, "nats-server": 2 * time.Second, "pg:projector": 3 * time.Second,
		"pg:other": 4 * time.Second, "bench": 100 * time.Second, "pg:background": 200 * time.Second,
	}}
	if got := u.Pipeline(); got != 10*time.Second {
		t.Errorf("Pipeline() = %v, want 10s", got)
	}
}

func TestPollCostAndFloor(t *testing.T) {
	idle := Phase{Usage: Usage{Wall: 10 * time.Second, CPU: map[string]time.Duration{"nats-server": time.Second}}} // 0.1 core
	poller := Phase{Polls: 1000, Usage: Usage{Wall: 5 * time.Second, CPU: map[string]time.Duration{
		"nats-server": 500 * time.Millisecond, "projector": 2 * time.Second, "bench": time.Hour,
	}}}
	// 2.5s used, 0.5s of it idle: 2s over 1000 reads.
	if got := PollCost(idle, poller); got != 2*time.Millisecond {
		t.Errorf("PollCost = %v, want 2ms", got)
	}
	if got := PollCost(idle, Phase{}); got != 0 {
		t.Errorf("no reads: %v", got)
	}
	if got := FloorPerEvent(400, 70, 280); got != 400+70+840 {
		t.Errorf("FloorPerEvent = %v", got)
	}
}
