package delivery

import (
	"net/http"
	"strconv"
	"time"
)

// NextAttempt decides what follows failed attempt n (1-based) under the
// schedule: the wait before the next attempt (±20% jitter), or give up
// (false) when the schedule is exhausted. A Retry-After the receiver sent
// with 429/503 is honoured within the schedule's bounds: never sooner than
// the schedule's own wait, never later than its longest step.
func NextAttempt(schedule []time.Duration, n int, retryAfter time.Duration, rnd func() float64) (time.Duration, bool) {
	if n > len(schedule) {
		return 0, false
	}
	wait := schedule[n-1]
	wait = time.Duration(float64(wait) * (0.8 + 0.4*rnd()))
	if retryAfter > wait {
		longest := wait
		for _, s := range schedule {
			longest = max(longest, s)
		}
		wait = min(retryAfter, longest)
	}
	return wait, true
}

// ParseRetryAfter reads Retry-After as seconds or an HTTP date.
func ParseRetryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now))
	}
	return 0
}
