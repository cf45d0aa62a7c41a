package attempt

import (
	"runtime/metrics"
	"time"
)

// schedLatencyTarget is the mean time runnable goroutines may wait for a
// CPU before the climber stops raising the limit. Measured on a 2-core
// machine delivering to endpoints that answer at once, the mean grows
// with attempts in flight by about 3 µs each (16 → 40 µs, 64 → 180 µs,
// 512 → 1.1 ms) while deliveries per second stay flat or fall; with
// endpoints that take 50 ms it stays far below this at 512.
const schedLatencyTarget = 100 * time.Microsecond

// schedLatency reads the Go scheduler's latency histogram (how long
// goroutines were runnable before they ran) and gives the mean since its
// last reading.
type schedLatency struct {
	sample []metrics.Sample
	counts []uint64 // at the last reading
}

func newSchedLatency() *schedLatency {
	s := &schedLatency{sample: []metrics.Sample{{Name: "/sched/latencies:seconds"}}}
	s.mean()
	return s
}

// mean is the mean scheduling latency since the last call; 0 when the
// runtime does not provide it or nothing was scheduled.
func (s *schedLatency) mean() time.Duration {
	metrics.Read(s.sample)
	if s.sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0
	}
	h := s.sample[0].Value.Float64Histogram()
	if len(s.counts) != len(h.Counts) {
		s.counts = make([]uint64, len(h.Counts))
	}
	var n uint64
	var sum float64
	for i, c := range h.Counts {
		d := c - s.counts[i]
		s.counts[i] = c
		if d == 0 {
			continue
		}
		// The bucket's lower bound (the first is -Inf, or 0).
		n += d
		sum += float64(d) * max(0, h.Buckets[i])
	}
	if n == 0 {
		return 0
	}
	return time.Duration(sum / float64(n) * float64(time.Second))
}
