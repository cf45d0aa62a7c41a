package delivery

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNextAttempt(t *testing.T) {
	t.Parallel()
	sched := []time.Duration{5 * time.Second, time.Minute, time.Hour}
	mid := func() float64 { return 0.5 }
	d, ok := NextAttempt(sched, 1, 0, mid)
	require.True(t, ok)
	require.Equal(t, 5*time.Second, d)
	d, _ = NextAttempt(sched, 1, 0, func() float64 { return 0 })
	require.Equal(t, 4*time.Second, d, "-20%")
	d, _ = NextAttempt(sched, 1, 0, func() float64 { return 1 })
	require.Equal(t, 6*time.Second, d, "+20%")
	d, _ = NextAttempt(sched, 2, 10*time.Minute, mid)
	require.Equal(t, 10*time.Minute, d, "Retry-After longer than the step is honoured")
	d, _ = NextAttempt(sched, 2, 48*time.Hour, mid)
	require.Equal(t, time.Hour, d, "but not beyond the schedule's longest step")
	d, _ = NextAttempt(sched, 3, time.Second, mid)
	require.Equal(t, time.Hour, d, "a shorter Retry-After does not hurry the schedule")
	_, ok = NextAttempt(sched, 4, 0, mid)
	require.False(t, ok, "schedule exhausted")
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	h := http.Header{}
	require.Zero(t, ParseRetryAfter(h, now))
	h.Set("Retry-After", "120")
	require.Equal(t, 2*time.Minute, ParseRetryAfter(h, now))
	h.Set("Retry-After", now.Add(time.Hour).Format(http.TimeFormat))
	require.Equal(t, time.Hour, ParseRetryAfter(h, now))
	h.Set("Retry-After", "soon")
	require.Zero(t, ParseRetryAfter(h, now))
}

func TestUUIDv7FloorOrdersWithIDs(t *testing.T) {
	t.Parallel()
	now := time.Now()
	id := NewID()
	require.Less(t, uuidV7Floor(now.Add(-time.Second)), id)
	require.Greater(t, uuidV7Floor(now.Add(time.Second)), id)
}
