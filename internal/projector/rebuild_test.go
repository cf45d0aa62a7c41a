package projector

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/pkg/events"
)

// keepAppending appends events of tenant acme (card c1 on board b1), one
// at a time, until stop is closed, counting them in appended.
func (b *bundle) keepAppending(t *testing.T, stop <-chan struct{}, wg *sync.WaitGroup, appended *atomic.Int64) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := b.pub.Append(context.Background(), ev("acme", fmt.Sprintf("live%d", i), "card", "c1", "moved", events.Ref{Type: "board", ID: "b1"})); err != nil {
				t.Error(err)
				return
			}
			appended.Add(1)
		}
	}()
}

// TestRebuildSwitchesWhileServing rebuilds the timelines from the stream
// while events keep arriving and readers keep reading: reads never fail,
// and afterwards the new generation holds every event exactly once.
func TestRebuildSwitchesWhileServing(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	b.worker(t, Config{}, nil)
	ctx := context.Background()
	const initial = 2000
	in := make([]events.Event, initial)
	for i := range in {
		in[i] = ev("acme", fmt.Sprintf("e%d", i), "card", fmt.Sprintf("c%d", i%20), "moved", events.Ref{Type: "board", ID: "b1"})
	}
	_, err := b.pub.AppendBatch(ctx, in)
	require.NoError(t, err)
	b.waitEvents(t, initial)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var appended atomic.Int64
	appended.Store(initial)
	b.keepAppending(t, stop, &wg, &appended)
	wg.Add(1)
	var reads atomic.Int64
	go func() { // reader
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := b.get(t, b.keys["acme"], "/v1/timelines/board/b1", url.Values{"limit": {"5"}})
			if r.status != http.StatusOK || len(r.page.Events) != 5 {
				t.Errorf("read during rebuild: %d %v", r.status, r.problem)
				return
			}
			reads.Add(1)
		}
	}()

	var sawSwitch atomic.Bool
	g, err := Rebuild(ctx, b.js, b.pool, RebuildConfig{DropDelay: 100 * time.Millisecond, Progress: func(_ int, _ uint64, switched bool) {
		if switched {
			sawSwitch.Store(true)
		}
	}}, b.log)
	require.NoError(t, err)
	require.Equal(t, 2, g)
	close(stop)
	wg.Wait()
	require.Positive(t, reads.Load())
	require.True(t, sawSwitch.Load())

	cur, err := b.store.CurrentGeneration(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, cur)
	gens, err := Generations(ctx, b.pool)
	require.NoError(t, err)
	require.Equal(t, []int{2}, gens, "the old generation is dropped")

	want := int(appended.Load())
	require.Eventually(t, func() bool {
		var n int
		_ = b.pool.QueryRow(ctx, "SELECT count(*) FROM timeline_g2.events").Scan(&n)
		return n == want
	}, 20*time.Second, 20*time.Millisecond, "every appended event in generation 2")
	var n, distinct, entries int
	require.NoError(t, b.pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT id), (SELECT count(*) FROM timeline_g2.entries) FROM timeline_g2.events").Scan(&n, &distinct, &entries))
	require.Equal(t, want, n)
	require.Equal(t, want, distinct)
	require.Equal(t, 2*want, entries)
	_, err = b.js.Consumer(ctx, events.StreamName, "projector-rebuild-g2")
	require.Error(t, err, "the rebuild consumer is deleted")

	r := b.get(t, b.keys["acme"], "/v1/activity", url.Values{"limit": {"1"}})
	require.Equal(t, http.StatusOK, r.status)
}
