package ttlcache

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCache(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	c := New[int](time.Second)
	c.now = func() time.Time { return now }
	_, ok := c.Get("a")
	require.False(t, ok)
	c.Put("a", 1)
	v, ok := c.Get("a")
	require.True(t, ok)
	require.Equal(t, 1, v)
	now = now.Add(time.Second)
	_, ok = c.Get("a")
	require.False(t, ok, "expired at its TTL")
	c.Put("a", 2)
	c.Put("b", 3)
	c.Forget("a")
	_, ok = c.Get("a")
	require.False(t, ok)
	c.Forget("")
	_, ok = c.Get("b")
	require.False(t, ok)
	for i := range MaxEntries + 1 {
		c.Put(strconv.Itoa(i), i)
	}
	require.LessOrEqual(t, len(c.m), MaxEntries, "bounded")
}
