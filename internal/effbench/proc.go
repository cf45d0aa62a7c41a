// Package effbench is `eventline bench efficiency`: CPU per event of every
// process of the pipeline at fixed rates, next to the raw floor measured in
// the same run (BENCHMARKS.md, "Efficiency"). Each service runs as its own
// OS process so that its CPU time can be read from /proc.
package effbench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// which is 100 on every Linux architecture Go supports (getconf CLK_TCK).
const clockTick = 10 * time.Millisecond

// parseStat returns utime+stime of a /proc/<pid>/stat line (proc(5)),
// which covers every thread of the process. The second field, comm, is in
// parentheses and may itself contain spaces and parentheses, so the fields
// are counted from the last ')'.
func parseStat(b []byte) (time.Duration, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, errors.New("no ')' after comm")
	}
	// After ") ": state(3) ppid(4) ... utime(14) stime(15).
	fields := bytes.Fields(b[end+1:])
	const utimeAt = 14 - 3
	if len(fields) <= utimeAt+1 {
		return 0, fmt.Errorf("%d fields after comm, want > %d", len(fields), utimeAt+1)
	}
	var ticks uint64
	for _, f := range fields[utimeAt : utimeAt+2] {
		n, err := strconv.ParseUint(string(f), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("utime/stime %q: %w", f, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// ProcessCPU is the CPU time (user+system, all threads) pid has used.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStat(b)
}

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
