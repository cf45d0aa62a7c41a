package webhooker

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/testenv"
)

// TestRateWindowsGrantASlotOnce: concurrent takes of one slot in Postgres
// get its allowance once between them, and a new slot starts afresh.
func TestRateWindowsGrantASlotOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := postgres.Open(ctx, testenv.Database(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	w := pgRateWindows{pool}
	var got atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				n, err := w.Take(ctx, "ep", 100*time.Millisecond, 42, 3, 10)
				require.NoError(t, err)
				got.Add(int64(n))
			}
		})
	}
	wg.Wait()
	require.Equal(t, int64(10), got.Load(), "40 takes of up to 3 share a slot of 10")
	n, err := w.Take(ctx, "ep", 100*time.Millisecond, 43, 3, 10)
	require.NoError(t, err)
	require.Equal(t, 3, n, "the next slot")
	n, err = w.Take(ctx, "other", 100*time.Millisecond, 42, 3, 10)
	require.NoError(t, err)
	require.Equal(t, 3, n, "another endpoint's slot")

	require.NoError(t, w.prune(ctx, time.Now()))
	var left int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM webhook.rate_windows`).Scan(&left))
	require.Zero(t, left, "slots of 1970 are pruned")
}
