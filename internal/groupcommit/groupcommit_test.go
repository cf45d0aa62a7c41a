package groupcommit_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/groupcommit"
)

// recorder commits by echoing each item doubled and records batch sizes;
// while gate is open-ended it holds every commit until released.
type recorder struct {
	mu      sync.Mutex
	batches [][]int
	gate    chan struct{}
	entered chan struct{} // closed when the first commit starts
	once    sync.Once
	fail    atomic.Bool
}

func (r *recorder) commit(_ context.Context, items []int) ([]int, error) {
	if r.entered != nil {
		r.once.Do(func() { close(r.entered) })
	}
	if r.gate != nil {
		<-r.gate
	}
	r.mu.Lock()
	r.batches = append(r.batches, append([]int(nil), items...))
	r.mu.Unlock()
	if r.fail.Load() {
		return nil, errors.New("commit failed")
	}
	out := make([]int, len(items))
	for i, v := range items {
		out[i] = v * 2
	}
	return out, nil
}

func TestEachCallerGetsItsOwnResult(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	b := groupcommit.New(r.commit, nil, groupcommit.Config{MaxBatch: 7})
	go b.Run()
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := b.Submit(context.Background(), i)
			require.NoError(t, err)
			require.Equal(t, 2*i, got)
		}()
	}
	wg.Wait()
	b.Close()
	<-b.Done()
	total := 0
	for _, batch := range r.batches {
		require.LessOrEqual(t, len(batch), 7)
		total += len(batch)
	}
	require.Equal(t, 200, total)
}

// TestRequestsWaitingDuringACommitShareTheNextBatch: while one commit is
// held, later requests gather into one batch.
func TestRequestsWaitingDuringACommitShareTheNextBatch(t *testing.T) {
	t.Parallel()
	r := &recorder{gate: make(chan struct{}), entered: make(chan struct{})}
	b := groupcommit.New(r.commit, nil, groupcommit.Config{MaxInflight: 1, Linger: time.Hour})
	go b.Run()
	first := make(chan error, 1)
	go func() { _, err := b.Submit(context.Background(), 1); first <- err }()
	<-r.entered // the first batch is committing
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = b.Submit(context.Background(), 100+i) }()
	}
	require.Eventually(t, func() bool { return b.Waiting.Load() == 10 }, 5*time.Second, time.Millisecond)
	close(r.gate)
	require.NoError(t, <-first)
	wg.Wait()
	b.Close()
	<-b.Done()
	require.Len(t, r.batches, 2)
	require.Len(t, r.batches[1], 10, "sent as soon as the commit in flight finished, without waiting for the linger")
}

func TestFailureReachesEveryCallerOfTheBatch(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	r.fail.Store(true)
	b := groupcommit.New(r.commit, nil, groupcommit.Config{})
	go b.Run()
	defer func() { b.Close(); <-b.Done() }()
	_, err := b.Submit(context.Background(), 1)
	require.ErrorContains(t, err, "commit failed")
}

func TestSizeLimitsAndClose(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	b := groupcommit.New(r.commit, func(v int) int { return v }, groupcommit.Config{MaxBatch: 10})
	go b.Run()
	_, err := b.Submit(context.Background(), 11)
	require.ErrorContains(t, err, "exceeds the batch limit")
	got, err := b.Submit(context.Background(), 10)
	require.NoError(t, err)
	require.Equal(t, 20, got)
	b.Close()
	<-b.Done()
	_, err = b.Submit(context.Background(), 1)
	require.ErrorIs(t, err, groupcommit.ErrClosed)
}
