package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/eventline/eventline/internal/groupcommit"
	"github.com/eventline/eventline/pkg/events"
)

// Appender appends normalized events durably, in order, and reports each
// one's outcome. *events.Publisher implements it.
type Appender interface {
	AppendNormalized(ctx context.Context, es []events.Event) ([]events.Result, error)
}

// EachAppender appends normalized events each on its own, independently of
// the others, and reports each one's outcome: results[i] when errs[i] is
// nil. *events.Publisher implements it (AppendEach).
type EachAppender interface {
	AppendEach(ctx context.Context, es []events.Event) (results []events.Result, errs []error)
}

// ErrClosed is returned by Committer.Append once shutdown has begun.
var ErrClosed = errors.New("ingest is shutting down")

// CommitterConfig bounds group commit. Zero values take the defaults.
type CommitterConfig struct {
	// MaxBatch is the most events in one atomic batch. Default and maximum
	// events.MaxBatch (1000, the server's limit).
	MaxBatch int
	// Linger is how long a batch waits for more requests while another
	// batch is already being committed. Default 5ms. When nothing is in
	// flight a batch is sent at once, so an idle service adds no latency.
	Linger time.Duration
	// MaxInflight is how many batches may be committing at once. Default 4
	// (the server allows 50 per stream).
	MaxInflight int
	// PartialInflight is how many batches may be committing when a batch
	// that is not full is sent: more commits in flight are for full
	// batches only, so a saturated ingest sends full batches, each paying
	// the server's fixed cost of an atomic batch once for 1000 events
	// (groupcommit.Config.PartialInflight; BENCHMARKS.md, "Fuller batches
	// under saturation"). Default DefaultPartialInflight.
	PartialInflight int
	// Timeout bounds one batch append. Default 10s.
	Timeout time.Duration
	// PipelineMax is the largest group of single-event requests appended as
	// pipelined plain publishes (one fsync each) rather than one atomic
	// batch (a fixed cost of several fsyncs), when the appender is an
	// EachAppender. Default DefaultPipelineMax; negative: never.
	PipelineMax int
	// Observe, when set, is called after every batch with its size, how
	// long the append took and whether it failed.
	Observe func(events int, took time.Duration, err error)
}

func (c *CommitterConfig) withDefaults() {
	if c.MaxBatch <= 0 || c.MaxBatch > events.MaxBatch {
		c.MaxBatch = events.MaxBatch
	}
	if c.Linger <= 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = 4
	}
	if c.PartialInflight <= 0 {
		c.PartialInflight = DefaultPartialInflight
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.PipelineMax == 0 {
		c.PipelineMax = DefaultPipelineMax
	}
}

// DefaultPipelineMax is CommitterConfig.PipelineMax's default, chosen by
// measurement (BENCHMARKS.md, "Single-event requests: pipelined plain
// publishes").
const DefaultPipelineMax = 12

// DefaultPartialInflight is CommitterConfig.PartialInflight's default,
// chosen by measurement (BENCHMARKS.md, "Fuller batches under
// saturation").
const DefaultPartialInflight = 2

// Committer coalesces concurrent append requests into atomic batches (group
// commit): one durable append, about one fsync, answers many requests. A
// request's events always travel in one batch, so a request is appended
// all or nothing. Each request is answered when its batch is acknowledged.
// The single-event requests of a group (when at most PipelineMax) are
// appended as pipelined plain publishes instead, each request answered by
// its own PubAck, while the group's multi-event requests still share one
// atomic batch (docs/architecture.md §3).
//
// Append is safe for concurrent use. Run must be running for requests to
// progress; Close stops intake and Run returns once every accepted request
// has been answered.
type Committer struct {
	b *groupcommit.Batcher[[]events.Event, []events.Result]
}

// NewCommitter returns a Committer appending through appender.
func NewCommitter(appender Appender, cfg CommitterConfig) *Committer {
	cfg.withDefaults()
	each, _ := appender.(EachAppender)
	commit := func(ctx context.Context, reqs [][]events.Event) ([][]events.Result, error) {
		var singles, multis []int
		if each != nil {
			for i, r := range reqs {
				if len(r) == 1 {
					singles = append(singles, i)
				} else {
					multis = append(multis, i)
				}
			}
		}
		if len(singles) == 0 || len(singles) > cfg.PipelineMax {
			return appendAtomic(ctx, appender, reqs)
		}
		return appendSplit(ctx, appender, each, reqs, singles, multis)
	}
	return &Committer{b: groupcommit.New(commit, func(es []events.Event) int { return len(es) }, groupcommit.Config{
		MaxBatch: cfg.MaxBatch, Linger: cfg.Linger, MaxInflight: cfg.MaxInflight, PartialInflight: cfg.PartialInflight, Timeout: cfg.Timeout, Observe: cfg.Observe,
	})}
}

// appendAtomic appends every request of a group in one atomic batch (or
// as few as MaxBatch allows): one outcome for the whole group.
func appendAtomic(ctx context.Context, appender Appender, reqs [][]events.Event) ([][]events.Result, error) {
	n := 0
	for _, r := range reqs {
		n += len(r)
	}
	all := make([]events.Event, 0, n) // events are 200 bytes: grown by doubling, a group of 600 copied ~10 times
	for _, r := range reqs {
		all = append(all, r...)
	}
	results, err := appender.AppendNormalized(ctx, all)
	if err != nil {
		return nil, err
	}
	if len(results) != len(all) {
		return nil, fmt.Errorf("append returned %d results for %d events", len(results), len(all))
	}
	out := make([][]events.Result, len(reqs))
	off := 0
	for i, r := range reqs {
		out[i] = results[off : off+len(r)]
		off += len(r)
	}
	return out, nil
}

// appendSplit appends a group's single-event requests (singles) as
// pipelined plain publishes, each with its own outcome, and its multi-event
// requests (multis) meanwhile in one atomic batch, so each of those stays
// all or nothing (docs/contract.md §2 Ingest). A failure answers exactly
// the requests it concerns (groupcommit.Errors).
func appendSplit(ctx context.Context, appender Appender, each EachAppender, reqs [][]events.Event, singles, multis []int) ([][]events.Result, error) {
	pick := func(at []int) [][]events.Event {
		out := make([][]events.Event, len(at))
		for j, i := range at {
			out[j] = reqs[i]
		}
		return out
	}
	var (
		wg       sync.WaitGroup
		multiOut [][]events.Result
		multiErr error
	)
	if len(multis) > 0 {
		wg.Go(func() { multiOut, multiErr = appendAtomic(ctx, appender, pick(multis)) })
	}
	singleOut, singleErr := appendEach(ctx, each, pick(singles))
	wg.Wait()

	out := make([][]events.Result, len(reqs))
	var failed groupcommit.Errors
	fail := func(i int, err error) {
		if failed == nil {
			failed = make(groupcommit.Errors, len(reqs))
		}
		failed[i] = err
	}
	var singleErrs groupcommit.Errors
	if !errors.As(singleErr, &singleErrs) && singleErr != nil {
		for _, i := range singles {
			fail(i, singleErr)
		}
	} else {
		for j, i := range singles {
			if singleErrs != nil && singleErrs[j] != nil {
				fail(i, singleErrs[j])
				continue
			}
			out[i] = singleOut[j]
		}
	}
	for j, i := range multis {
		if multiErr != nil {
			fail(i, multiErr)
			continue
		}
		out[i] = multiOut[j]
	}
	if failed != nil {
		return out, failed
	}
	return out, nil
}

// appendEach appends a group of single-event requests as independent
// publishes: each request is atomic on its own (one event), and none needs
// the others' (docs/contract.md §2 Ingest). Each request gets its own
// outcome, so a partial failure answers 202 exactly for the stored events
// and 503 for the others.
func appendEach(ctx context.Context, each EachAppender, reqs [][]events.Event) ([][]events.Result, error) {
	es := make([]events.Event, len(reqs))
	for i, r := range reqs {
		es[i] = r[0]
	}
	results, errs := each.AppendEach(ctx, es)
	if len(results) != len(es) || len(errs) != len(es) {
		return nil, fmt.Errorf("append returned %d results and %d errors for %d events", len(results), len(errs), len(es))
	}
	out := make([][]events.Result, len(reqs))
	var failed groupcommit.Errors
	for i, err := range errs {
		if err != nil {
			if failed == nil {
				failed = make(groupcommit.Errors, len(reqs))
			}
			failed[i] = err
			continue
		}
		out[i] = results[i : i+1 : i+1]
	}
	if failed != nil {
		return out, failed
	}
	return out, nil
}

// Append queues normalized events (at most MaxBatch) for the next batch and
// waits until they are durable. The results are in input order.
func (c *Committer) Append(ctx context.Context, es []events.Event) ([]events.Result, error) {
	if len(es) == 0 {
		return nil, nil
	}
	res, err := c.b.Submit(ctx, es)
	if errors.Is(err, groupcommit.ErrClosed) {
		return nil, ErrClosed
	}
	return res, err
}

// Close stops accepting requests. Requests already accepted are still
// committed; wait for Done.
func (c *Committer) Close() { c.b.Close() }

// Done is closed when Run has answered every accepted request and returned.
func (c *Committer) Done() <-chan struct{} { return c.b.Done() }

// Run forms and commits batches until Close, then drains.
func (c *Committer) Run() { c.b.Run() }
