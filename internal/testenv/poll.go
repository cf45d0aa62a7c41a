package testenv

import (
	"slices"
	"testing"
	"time"
)

// Poll calls cond every few milliseconds until it is true, failing the
// test when within passes first. For conditions no signal announces: a
// child process becoming ready, a count reached in another process.
func Poll(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("testenv: %s: not within %v", what, within)
		case <-tick.C:
		}
	}
}

// Median returns the median of xs (0 for none), for benchmarks that report
// the median of their iterations.
func Median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	slices.Sort(s)
	switch {
	case len(s) == 0:
		return 0
	case len(s)%2 == 1:
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
