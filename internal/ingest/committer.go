package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventline/eventline/pkg/events"
)

// Appender appends normalized events durably, in order, and reports each
// one's outcome. *events.Publisher implements it.
type Appender interface {
	AppendNormalized(ctx context.Context, es []events.Event) ([]events.Result, error)
}

// ErrClosed is returned by Committer.Append once shutdown has begun.
var ErrClosed = errors.New("ingest is shutting down")

// CommitterConfig bounds group commit. Zero values take the defaults.
type CommitterConfig struct {
	// MaxBatch is the most events in one atomic batch. Default and maximum
	// events.MaxBatch (1000, the server's limit).
	MaxBatch int
	// Linger is how long a batch waits for more requests while another
	// batch is already being committed. Default 1ms. When nothing is in
	// flight a batch is sent at once, so an idle service adds no latency.
	Linger time.Duration
	// MaxInflight is how many batches may be committing at once. Default 4
	// (the server allows 50 per stream).
	MaxInflight int
	// Timeout bounds one batch append. Default 10s.
	Timeout time.Duration
	// Observe, when set, is called after every batch with its size, how
	// long the append took and whether it failed.
	Observe func(events int, took time.Duration, err error)
}

func (c *CommitterConfig) withDefaults() {
	if c.MaxBatch <= 0 || c.MaxBatch > events.MaxBatch {
		c.MaxBatch = events.MaxBatch
	}
	if c.Linger <= 0 {
		c.Linger = time.Millisecond
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = 4
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
}

// Committer coalesces concurrent append requests into atomic batches (group
// commit): one durable append, about one fsync, answers many requests. A
// request's events always travel in one batch, so a request is appended
// all or nothing. Each request is answered when its batch is acknowledged.
//
// Append is safe for concurrent use. Run must be running for requests to
// progress; Close stops intake and Run returns once every accepted request
// has been answered.
type Committer struct {
	cfg      CommitterConfig
	appender Appender

	mu     sync.RWMutex // guards closed against sends on in
	closed bool
	// waiting counts the requests in the batch being formed (for tests and
	// metrics).
	waiting atomic.Int64
	in      chan *request
	done    chan struct{} // closed when Run has finished
}

type request struct {
	events  []events.Event
	results []events.Result
	err     error
	ready   chan struct{}
}

// NewCommitter returns a Committer appending through appender.
func NewCommitter(appender Appender, cfg CommitterConfig) *Committer {
	cfg.withDefaults()
	return &Committer{cfg: cfg, appender: appender, in: make(chan *request, 1024), done: make(chan struct{})}
}

// Append queues normalized events (at most MaxBatch) for the next batch and
// waits until they are durable. The results are in input order.
func (c *Committer) Append(ctx context.Context, es []events.Event) ([]events.Result, error) {
	if len(es) == 0 {
		return nil, nil
	}
	if len(es) > c.cfg.MaxBatch {
		return nil, fmt.Errorf("%d events in one request exceed the batch limit of %d", len(es), c.cfg.MaxBatch)
	}
	req := &request{events: es, ready: make(chan struct{})}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case c.in <- req:
		c.mu.RUnlock()
	case <-ctx.Done():
		c.mu.RUnlock()
		return nil, ctx.Err()
	}
	// Once queued, the request is committed whatever the caller does: wait
	// for the outcome, or return early if the caller has gone away.
	select {
	case <-req.ready:
		return req.results, req.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops accepting requests. Requests already accepted are still
// committed; wait for Run to return.
func (c *Committer) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.in)
	}
}

// Done is closed when Run has answered every accepted request and returned.
func (c *Committer) Done() <-chan struct{} { return c.done }

// Run forms and commits batches until Close, then drains. It is the only
// goroutine that reads requests.
func (c *Committer) Run() {
	defer close(c.done)
	var (
		batch    []*request
		size     int
		inflight int
		finished = make(chan struct{}, c.cfg.MaxInflight)
		linger   = time.NewTimer(time.Hour)
		expired  bool
		in       = c.in
	)
	linger.Stop()
	send := func() {
		inflight++
		go c.commit(batch, size, finished)
		batch, size, expired = nil, 0, false
		c.waiting.Store(0)
		linger.Stop()
	}
	for {
		// Send when the batch is full, has waited long enough, or nothing
		// is committing (so an idle service adds no latency); intake closed
		// sends whatever is left.
		if len(batch) > 0 && inflight < c.cfg.MaxInflight &&
			(size >= c.cfg.MaxBatch || expired || inflight == 0 || in == nil) {
			send()
			continue
		}
		if in == nil && len(batch) == 0 && inflight == 0 {
			return
		}
		var recv <-chan *request
		if size < c.cfg.MaxBatch {
			recv = in
		}
		select {
		case req, ok := <-recv:
			if !ok {
				in = nil
				continue
			}
			if size+len(req.events) > c.cfg.MaxBatch {
				// It does not fit: the current batch is full as it is.
				for inflight >= c.cfg.MaxInflight {
					<-finished
					inflight--
				}
				send()
			}
			if len(batch) == 0 {
				linger.Reset(c.cfg.Linger)
			}
			batch = append(batch, req)
			size += len(req.events)
			c.waiting.Store(int64(len(batch)))
		case <-linger.C:
			expired = len(batch) > 0
		case <-finished:
			inflight--
		}
	}
}

// commit appends one batch and answers its requests.
func (c *Committer) commit(batch []*request, size int, finished chan<- struct{}) {
	defer func() { finished <- struct{}{} }()
	all := make([]events.Event, 0, size)
	for _, r := range batch {
		all = append(all, r.events...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	start := time.Now()
	results, err := c.appender.AppendNormalized(ctx, all)
	cancel()
	if c.cfg.Observe != nil {
		c.cfg.Observe(size, time.Since(start), err)
	}
	if err == nil && len(results) != size {
		err = fmt.Errorf("append returned %d results for %d events", len(results), size)
	}
	off := 0
	for _, r := range batch {
		if err != nil {
			r.err = err
		} else {
			r.results = results[off : off+len(r.events)]
			off += len(r.events)
		}
		close(r.ready)
	}
}
