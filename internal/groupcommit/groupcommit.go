// Package groupcommit coalesces concurrent requests into batches that are
// committed together: one durable write answers many callers. Ingest uses
// it for atomic batch publishes, the webhooker for delivery inserts (with
// Config.Inline: a request to an idle batcher is committed by its caller).
package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Submit once Close has been called.
var ErrClosed = errors.New("group commit is closed")

// Config bounds batches. Zero values take the defaults.
type Config struct {
	// MaxBatch is the most units (see Batcher's size function) in a batch.
	// Default 1000.
	MaxBatch int
	// Linger is how long a batch waits for more requests while another
	// batch is committing. Default 5ms. When nothing is committing a batch
	// is sent at once, so an idle system adds no latency.
	Linger time.Duration
	// MaxInflight is how many batches may commit at once. Default 4.
	MaxInflight int
	// PartialInflight is how many batches may be committing when one that
	// is not full is sent (its linger passed); a full batch may go while
	// fewer than MaxInflight commit. When commits take long and cost about
	// the same whatever their size, a saturated batcher then sends full
	// batches instead of cutting the requests in flight into MaxInflight
	// small ones, each paying the commit's fixed cost. Nothing waits more
	// when idle: with no commit in flight a batch is sent at once. Default
	// (and at most) MaxInflight.
	PartialInflight int
	// Timeout bounds one commit. Default 10s.
	Timeout time.Duration
	// Observe, when set, is called after every commit with its size in
	// units, its duration and its error.
	Observe func(units int, took time.Duration, err error)
	// Inline: a request submitted while the batcher is idle — no batch
	// committing, none forming, nothing queued — is committed by Submit
	// itself, alone, as Run would have sent it at once: at low rates, where
	// every request arrives alone, it saves handing it to Run, Run's
	// timer and the goroutine of its commit (wake-ups that cost more than
	// the hand-over's work: BENCHMARKS.md, "Where the CPU goes at low
	// rates"). At most one inline commit runs at a time, and Run sends
	// nothing at once while it runs: requests that come meanwhile form a
	// batch, sent when the linger ends.
	Inline bool
}

func (c *Config) withDefaults() {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 1000
	}
	if c.Linger <= 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = 4
	}
	if c.PartialInflight <= 0 || c.PartialInflight > c.MaxInflight {
		c.PartialInflight = c.MaxInflight
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
}

// CommitFunc commits a batch of requests and returns one result per
// request, in order; an error fails every request of the batch, except an
// Errors of one entry per request, which answers each request on its own.
type CommitFunc[T, R any] func(ctx context.Context, batch []T) ([]R, error)

// Errors is the error a CommitFunc returns when the requests of a batch
// were committed independently and some failed: entry i is request i's
// error, and request i gets results[i] when it is nil. A request must never
// be told it failed when it was committed, nor the reverse
// (docs/contract.md §2 Ingest: 202 only once durable, 503 when nothing is
// acknowledged).
type Errors []error

func (e Errors) Error() string {
	failed, first := 0, error(nil)
	for _, err := range e {
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	if first == nil {
		return "no request failed"
	}
	return fmt.Sprintf("%d of %d requests failed, first: %v", failed, len(e), first)
}

// Failed reports how many requests failed.
func (e Errors) Failed() int {
	n := 0
	for _, err := range e {
		if err != nil {
			n++
		}
	}
	return n
}

// Batcher forms and commits batches. Submit is safe for concurrent use;
// Run must be running for requests to progress; after Close, Run returns
// once every accepted request has been answered.
type Batcher[T, R any] struct {
	cfg    Config
	commit CommitFunc[T, R]
	size   func(T) int

	mu     sync.RWMutex // guards closed against sends on in
	closed bool
	in     chan *request[T, R]
	done   chan struct{}
	// Waiting counts the requests in the batch being formed.
	Waiting atomic.Int64

	inflight atomic.Int64 // Run's batches committing
	inline   atomic.Bool  // an inline commit runs (Config.Inline)
	inlines  sync.WaitGroup
}

type request[T, R any] struct {
	item   T
	units  int
	result R
	err    error
	ready  chan struct{}
}

// New returns a Batcher; size gives a request's units (1 when nil).
func New[T, R any](commit CommitFunc[T, R], size func(T) int, cfg Config) *Batcher[T, R] {
	cfg.withDefaults()
	if size == nil {
		size = func(T) int { return 1 }
	}
	return &Batcher[T, R]{cfg: cfg, commit: commit, size: size, in: make(chan *request[T, R], 1024), done: make(chan struct{})}
}

// Submit queues item for the next batch and waits for its result. Once
// queued, the item is committed even if ctx ends first.
func (b *Batcher[T, R]) Submit(ctx context.Context, item T) (R, error) {
	var zero R
	units := b.size(item)
	if units > b.cfg.MaxBatch {
		return zero, fmt.Errorf("request of %d exceeds the batch limit of %d", units, b.cfg.MaxBatch)
	}
	req := &request[T, R]{item: item, units: units, ready: make(chan struct{})}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return zero, ErrClosed
	}
	if b.cfg.Inline && b.idle() && b.inline.CompareAndSwap(false, true) {
		b.inlines.Add(1) // under mu: Run waits for it before it returns
		b.mu.RUnlock()
		defer b.inlines.Done()
		defer b.inline.Store(false)
		b.commitBatch([]*request[T, R]{req})
		return req.result, req.err
	}
	select {
	case b.in <- req:
		b.mu.RUnlock()
	case <-ctx.Done():
		b.mu.RUnlock()
		return zero, ctx.Err()
	}
	select {
	case <-req.ready:
		return req.result, req.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// idle tells whether no batch commits, none is forming and nothing is
// queued.
func (b *Batcher[T, R]) idle() bool {
	return b.inflight.Load() == 0 && b.Waiting.Load() == 0 && len(b.in) == 0
}

// Close stops accepting requests.
func (b *Batcher[T, R]) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.in)
	}
}

// Done is closed when Run has returned.
func (b *Batcher[T, R]) Done() <-chan struct{} { return b.done }

// QueueLen is the number of requests not yet taken into a batch.
func (b *Batcher[T, R]) QueueLen() int { return len(b.in) }

// Run forms and commits batches until Close, then drains.
func (b *Batcher[T, R]) Run() {
	defer close(b.done)
	defer b.inlines.Wait()
	var (
		batch    []*request[T, R]
		size     int
		inflight int
		finished = make(chan struct{}, b.cfg.MaxInflight)
		linger   = time.NewTimer(time.Hour)
		expired  bool
		in       = b.in
	)
	linger.Stop()
	send := func() {
		inflight++
		b.inflight.Store(int64(inflight))
		go b.run(batch, finished)
		batch, size, expired = nil, 0, false
		b.Waiting.Store(0)
		linger.Stop()
	}
	for {
		if len(batch) > 0 && inflight < b.cfg.MaxInflight &&
			(size >= b.cfg.MaxBatch || (inflight == 0 && !b.inline.Load()) || in == nil || (expired && inflight < b.cfg.PartialInflight)) {
			send()
			continue
		}
		if in == nil && len(batch) == 0 && inflight == 0 {
			return
		}
		var recv <-chan *request[T, R]
		if size < b.cfg.MaxBatch {
			recv = in
		}
		select {
		case req, ok := <-recv:
			if !ok {
				in = nil
				continue
			}
			if size+req.units > b.cfg.MaxBatch {
				for inflight >= b.cfg.MaxInflight {
					<-finished
					inflight--
					b.inflight.Store(int64(inflight))
				}
				send()
			}
			if len(batch) == 0 {
				linger.Reset(b.cfg.Linger)
			}
			batch = append(batch, req)
			size += req.units
			b.Waiting.Store(int64(len(batch)))
		case <-linger.C:
			expired = len(batch) > 0
		case <-finished:
			inflight--
			b.inflight.Store(int64(inflight))
		}
	}
}

func (b *Batcher[T, R]) run(batch []*request[T, R], finished chan<- struct{}) {
	defer func() { finished <- struct{}{} }()
	b.commitBatch(batch)
}

// commitBatch commits batch and answers each of its requests.
func (b *Batcher[T, R]) commitBatch(batch []*request[T, R]) {
	items := make([]T, len(batch))
	units := 0
	for i, r := range batch {
		items[i] = r.item
		units += r.units
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Timeout)
	start := time.Now()
	results, err := b.commit(ctx, items)
	cancel()
	var each Errors
	if errors.As(err, &each) {
		switch {
		case len(each) != len(batch):
			err = fmt.Errorf("commit returned %d errors for %d requests: %w", len(each), len(batch), err)
			each = nil
		case len(results) != len(batch):
			err = fmt.Errorf("commit returned %d results for %d requests: %w", len(results), len(batch), err)
			each = nil
		case each.Failed() == 0:
			err, each = nil, nil
		}
	}
	if err == nil && len(results) != len(batch) {
		err = fmt.Errorf("commit returned %d results for %d requests", len(results), len(batch))
	}
	if b.cfg.Observe != nil {
		b.cfg.Observe(units, time.Since(start), err)
	}
	for i, r := range batch {
		switch {
		case each != nil && each[i] != nil:
			r.err = each[i]
		case each != nil || err == nil:
			r.result = results[i]
		default:
			r.err = err
		}
		close(r.ready)
	}
}
