// Package effbench is `eventline bench efficiency`: CPU per event of every
// process of the pipeline at fixed rates, next to the raw floor measured in
// the same run (BENCHMARKS.md, "Efficiency"). Each service runs as its own
// OS process so that its CPU time can be read from /proc.
package effbench

import (
	"slices"
	"time"
)

// Sample is the CPU time of a set of processes at one moment, by group
// (a service, or the Postgres backends of one service) and pid.
type Sample struct {
	At  time.Time
	CPU map[string]map[int]time.Duration
}

// Usage is what each group used between two samples.
type Usage struct {
	Wall time.Duration
	CPU  map[string]time.Duration
}

// Delta is the CPU each group used from a to b. A pid in b that is not in
// a started in between and counts whole; a pid in a that is gone from b
// exited, and what it used since a is lost (its parent's cutime would
// have it, but not per group): the Postgres backends of a pool that
// closes a connection mid-phase are undercounted by that much.
func Delta(a, b Sample) Usage {
	u := Usage{Wall: b.At.Sub(a.At), CPU: map[string]time.Duration{}}
	for g, pids := range b.CPU {
		var d time.Duration
		for pid, t := range pids {
			d += t - a.CPU[g][pid]
		}
		u.CPU[g] = d
	}
	return u
}

// Cores is the average number of cores busy: CPU time over wall time.
func Cores(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return cpu.Seconds() / wall.Seconds()
}

// PerEvent is CPU time per event in microseconds.
func PerEvent(cpu time.Duration, events int) float64 {
	if events <= 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(events)
}

// Median of xs (the mean of the middle two for an even count); 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Pipeline is the CPU of the pipeline's own processes: every group but
// the load generator ("bench") and the Postgres server's background
// processes ("pg:background"), which the cluster's other databases share.
func (u Usage) Pipeline() time.Duration {
	var d time.Duration
	for g, t := range u.CPU {
		if g != "bench" && g != "pg:background" {
			d += t
		}
	}
	return d
}
