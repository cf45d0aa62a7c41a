package attempt

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/webhooker/delivery"
)

// TestSlotsAllowATenthOfTheLimit: a slot allows a tenth of the limit (at
// least one delivery) and lasts as long as that takes at the limit.
func TestSlotsAllowATenthOfTheLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		perSec int
		width  time.Duration
		per    int
	}{
		{1, time.Second, 1},
		{5, 200 * time.Millisecond, 1},
		{15, time.Second / 15, 1},
		{20, 100 * time.Millisecond, 2},
		{1000, 100 * time.Millisecond, 100},
	} {
		width, per := slots(tc.perSec)
		require.Equal(t, tc.width, width, "%d/s", tc.perSec)
		require.Equal(t, tc.per, per, "%d/s", tc.perSec)
	}
}

// TestDispatcherKeepsTheBudgetOfAnIdleEndpoint: deliveries to a
// rate-limited endpoint arriving one at a time (its queue empties and goes
// between them) still wait for the limit.
func TestDispatcherKeepsTheBudgetOfAnIdleEndpoint(t *testing.T) {
	t.Parallel()
	var started []time.Time
	var mu sync.Mutex
	done := make(chan struct{}, 100)
	d := NewDispatcher(context.Background(), DispatchConfig{}, func(context.Context, delivery.Job) {
		mu.Lock()
		started = append(started, time.Now())
		mu.Unlock()
		done <- struct{}{}
	}, func(string) int { return 10 })
	for range 5 {
		d.Submit(delivery.Job{DeliveryID: delivery.NewID(), EndpointID: "ep"})
		<-done
	}
	d.Wait()
	mu.Lock()
	defer mu.Unlock()
	// A burst of one (a tenth of 10/s), then one per 100 ms.
	require.GreaterOrEqual(t, started[4].Sub(started[0]), 350*time.Millisecond, "5 deliveries at 10/s, one at a time")
}

// TestDispatcherForgetsIdleBudgets: the budgets of rate-limited endpoints
// that have had nothing queued for idleBudget are dropped, so a replica
// does not keep one per endpoint it ever sent to.
func TestDispatcherForgetsIdleBudgets(t *testing.T) {
	t.Parallel()
	const endpoints = 200
	var attempts sync.WaitGroup
	attempts.Add(endpoints)
	d := NewDispatcher(context.Background(), DispatchConfig{}, func(context.Context, delivery.Job) { attempts.Done() }, func(string) int { return 10 })
	d.idleBudget = 0 // idle at once: every queue that goes sweeps
	for i := range endpoints {
		d.Submit(delivery.Job{DeliveryID: delivery.NewID(), EndpointID: fmt.Sprintf("ep%d", i)})
	}
	attempts.Wait()
	d.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	require.Empty(t, d.queues)
	require.Empty(t, d.budgets, "the budgets of endpoints with nothing queued")
}

// memWindows is rateWindows in memory.
type memWindows struct {
	mu   sync.Mutex
	used map[int64]int
}

func (w *memWindows) Take(_ context.Context, _ string, _ time.Duration, slot int64, want, per int) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := min(want, per-w.used[slot])
	w.used[slot] += n
	return n, nil
}

// TestSharedBudgetsNeverExceedASlot: three replicas' budgets on one store
// take at most a slot's allowance in each slot between them.
func TestSharedBudgetsNeverExceedASlot(t *testing.T) {
	t.Parallel()
	w := &memWindows{used: map[int64]int{}}
	width, per := slots(20)
	var sent sync.Map // slot -> *atomic.Int64
	var wg sync.WaitGroup
	for range 3 {
		b := newSharedBudget(context.Background(), w, "ep", 20)
		wg.Go(func() {
			for end := time.Now().Add(600 * time.Millisecond); time.Now().Before(end); {
				now := time.Now()
				ok, wait := b.take(now, 5)
				if !ok {
					time.Sleep(wait)
					continue
				}
				n, _ := sent.LoadOrStore(now.UnixNano()/int64(width), &atomic.Int64{})
				n.(*atomic.Int64).Add(1)
			}
		})
	}
	wg.Wait()
	total := 0
	sent.Range(func(slot, n any) bool {
		require.LessOrEqual(t, n.(*atomic.Int64).Load(), int64(per), "slot %d", slot)
		total += int(n.(*atomic.Int64).Load())
		return true
	})
	require.Greater(t, total, 6, "the budgets sent in most slots of 600 ms")
}
