package groupcommit_test

import (
	"context"
	"errors"
	"fmt"
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

// gatedBatch holds the first commit so that the requests submitted meanwhile
// form one batch, then commits that batch with commit.
func gatedBatch[R any](t *testing.T, items []int, commit func([]int) ([]R, error)) ([]R, []error, [][]int) {
	t.Helper()
	var (
		mu      sync.Mutex
		batches [][]int
		entered = make(chan struct{})
		gate    = make(chan struct{})
		once    sync.Once
	)
	b := groupcommit.New(func(_ context.Context, batch []int) ([]R, error) {
		first := false
		once.Do(func() { first = true; close(entered); <-gate })
		if first {
			return make([]R, len(batch)), nil
		}
		mu.Lock()
		batches = append(batches, append([]int(nil), batch...))
		mu.Unlock()
		return commit(batch)
	}, nil, groupcommit.Config{MaxInflight: 1, Linger: time.Hour})
	go b.Run()
	defer func() { b.Close(); <-b.Done() }()
	go func() { _, _ = b.Submit(context.Background(), -1) }()
	<-entered
	results := make([]R, len(items))
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	for i, v := range items {
		wg.Add(1)
		go func() { defer wg.Done(); results[i], errs[i] = b.Submit(context.Background(), v) }()
	}
	require.Eventually(t, func() bool { return b.Waiting.Load() == int64(len(items)) }, 5*time.Second, time.Millisecond)
	close(gate)
	wg.Wait()
	return results, errs, batches
}

// TestErrorsAnswerEachRequestOnItsOwn: a commit that returns Errors fails
// exactly the requests whose entry is set; the others get their results.
func TestErrorsAnswerEachRequestOnItsOwn(t *testing.T) {
	t.Parallel()
	items := []int{1, 2, 3, 4, 5, 6}
	results, errs, batches := gatedBatch(t, items, func(batch []int) ([]int, error) {
		out := make([]int, len(batch))
		each := make(groupcommit.Errors, len(batch))
		for i, v := range batch {
			if v%2 == 0 {
				each[i] = fmt.Errorf("item %d failed", v)
				continue
			}
			out[i] = v * 10
		}
		return out, each
	})
	require.Len(t, batches, 1, "the requests shared one batch")
	for i, v := range items {
		if v%2 == 0 {
			require.EqualError(t, errs[i], fmt.Sprintf("item %d failed", v))
			require.Zero(t, results[i])
			continue
		}
		require.NoError(t, errs[i])
		require.Equal(t, v*10, results[i])
	}
}

// TestErrorsWithoutFailuresIsSuccess: an Errors of nil entries answers
// every request with its result.
func TestErrorsWithoutFailuresIsSuccess(t *testing.T) {
	t.Parallel()
	results, errs, _ := gatedBatch(t, []int{1, 2, 3}, func(batch []int) ([]int, error) {
		return []int{7, 8, 9}, make(groupcommit.Errors, len(batch))
	})
	require.Equal(t, []error{nil, nil, nil}, errs)
	require.ElementsMatch(t, []int{7, 8, 9}, results)
}

// TestMalformedErrorsFailsEveryRequest: an Errors that does not have one
// entry per request cannot say who failed, so every request fails (none is
// told it succeeded).
func TestMalformedErrorsFailsEveryRequest(t *testing.T) {
	t.Parallel()
	_, errs, _ := gatedBatch(t, []int{1, 2, 3}, func([]int) ([]int, error) {
		return []int{1, 2, 3}, groupcommit.Errors{errors.New("x")}
	})
	for _, err := range errs {
		require.ErrorContains(t, err, "commit returned 1 errors for 3 requests")
	}
	_, errs, _ = gatedBatch(t, []int{1, 2, 3}, func([]int) ([]int, error) {
		return []int{1}, groupcommit.Errors{nil, nil, errors.New("x")}
	})
	for _, err := range errs {
		require.ErrorContains(t, err, "commit returned 1 results for 3 requests")
	}
}

// TestInlineCommitsALoneRequestInItsCaller: with Inline, a request to an
// idle batcher is committed by Submit itself — Run need not even run —
// and requests that come while it commits form a batch Run sends once
// its linger ends; every caller gets its own result.
func TestInlineCommitsALoneRequestInItsCaller(t *testing.T) {
	t.Parallel()
	r := &recorder{gate: make(chan struct{}), entered: make(chan struct{})}
	b := groupcommit.New(r.commit, nil, groupcommit.Config{Inline: true, Linger: 10 * time.Millisecond})
	first := make(chan int, 1)
	go func() {
		got, err := b.Submit(context.Background(), 1)
		require.NoError(t, err)
		first <- got
	}()
	<-r.entered // committing in its caller: Run is not running
	go b.Run()
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := b.Submit(context.Background(), 100+i)
			require.NoError(t, err)
			require.Equal(t, 2*(100+i), got)
		}()
	}
	require.Eventually(t, func() bool { return b.Waiting.Load() == 10 }, 5*time.Second, time.Millisecond)
	close(r.gate)
	require.Equal(t, 2, <-first)
	wg.Wait()
	b.Close()
	<-b.Done()
	require.Len(t, r.batches, 2)
	lone, gathered := r.batches[0], r.batches[1]
	if len(lone) != 1 { // both commits were released by the gate at once
		lone, gathered = gathered, lone
	}
	require.Equal(t, []int{1}, lone)
	require.Len(t, gathered, 10, "gathered while the inline commit ran, sent as one batch")
}

// TestInlineUnderConcurrency: with Inline, concurrent callers each get
// their own result and every request is committed once.
func TestInlineUnderConcurrency(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	b := groupcommit.New(r.commit, nil, groupcommit.Config{MaxBatch: 7, Inline: true})
	go b.Run()
	var wg sync.WaitGroup
	for i := range 500 {
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
	seen := map[int]bool{}
	for _, batch := range r.batches {
		require.LessOrEqual(t, len(batch), 7)
		for _, v := range batch {
			require.False(t, seen[v], "committed twice: %d", v)
			seen[v] = true
		}
	}
	require.Len(t, seen, 500)
}

// TestPartialBatchesWaitForRoom: with PartialInflight 1, a full batch is
// sent while another commits, but one that is not full waits, however long
// its linger has passed, until nothing commits: saturated, the batcher
// fills batches instead of sending many small ones.
func TestPartialBatchesWaitForRoom(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	var started atomic.Int64
	var mu sync.Mutex
	var sizes []int
	b := groupcommit.New(func(_ context.Context, items []int) ([]int, error) {
		started.Add(1)
		<-gate
		mu.Lock()
		sizes = append(sizes, len(items))
		mu.Unlock()
		return items, nil
	}, nil, groupcommit.Config{MaxBatch: 5, MaxInflight: 4, PartialInflight: 1, Linger: time.Nanosecond})
	go b.Run()
	var wg sync.WaitGroup
	submit := func(n int) {
		for i := range n {
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = b.Submit(context.Background(), i) }()
		}
	}
	submit(1) // nothing commits: sent at once
	require.Eventually(t, func() bool { return started.Load() == 1 }, 5*time.Second, time.Millisecond)
	submit(5) // full: sent while the first commits
	require.Eventually(t, func() bool { return started.Load() == 2 }, 5*time.Second, time.Millisecond)
	submit(3) // not full: waits for room, gathering past its linger
	require.Eventually(t, func() bool { return b.Waiting.Load() == 3 }, 5*time.Second, time.Millisecond)
	require.Equal(t, int64(2), started.Load())
	close(gate)
	wg.Wait()
	b.Close()
	<-b.Done()
	require.ElementsMatch(t, []int{1, 5, 3}, sizes)
}
