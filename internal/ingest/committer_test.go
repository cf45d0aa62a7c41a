package ingest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// gatedAppender delegates to the real publisher, holding the first call
// until released and recording every batch's event ids.
type gatedAppender struct {
	next    Appender
	entered chan struct{} // closed when the first call arrives
	release chan struct{} // closed to let the first call through
	once    sync.Once
	mu      sync.Mutex
	batches [][]string
}

func (g *gatedAppender) AppendNormalized(ctx context.Context, es []events.Event) ([]events.Result, error) {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	g.mu.Lock()
	g.batches = append(g.batches, ids)
	g.mu.Unlock()
	return g.next.AppendNormalized(ctx, es)
}

func normalized(t *testing.T, id string) events.Event {
	t.Helper()
	e := events.Event{ID: id, Tenant: "acme", Action: "created", Eventable: events.Ref{Type: "card", ID: id}, Creator: events.Ref{Type: "user", ID: "u1"}}
	require.NoError(t, e.Normalize(time.Now()))
	return e
}

// TestCommitterDuplicateInSharedBatch coalesces one request that re-sends a
// stored id with many others into a single batch: the server rejects the
// atomic batch (10201), the fallback stores the rest, and only the re-sent
// id comes back duplicate.
func TestCommitterDuplicateInSharedBatch(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	_, err := stream.Ensure(context.Background(), nc, stream.Config{})
	require.NoError(t, err)
	pub, err := events.NewPublisher(n.ConnectAs(t, natsauth.Ingest))
	require.NoError(t, err)
	stored, err := pub.AppendNormalized(context.Background(), []events.Event{normalized(t, "stored")})
	require.NoError(t, err)

	gate := &gatedAppender{next: pub, entered: make(chan struct{}), release: make(chan struct{})}
	c := NewCommitter(gate, CommitterConfig{MaxInflight: 1})
	go c.Run()
	defer func() { c.Close(); <-c.Done() }()

	// The first request holds the only in-flight slot at the gate.
	firstDone := make(chan error, 1)
	go func() {
		_, err := c.Append(context.Background(), []events.Event{normalized(t, "first")})
		firstDone <- err
	}()
	<-gate.entered

	const others = 20
	type out struct {
		i   int
		res []events.Result
		err error
	}
	outs := make(chan out, others+1)
	var sent sync.WaitGroup
	for i := 0; i <= others; i++ {
		sent.Add(1)
		go func() {
			es := []events.Event{normalized(t, fmt.Sprintf("new%d", i))}
			if i == others {
				es = append(es, normalized(t, "stored"))
			}
			sent.Done()
			res, err := c.Append(context.Background(), es)
			outs <- out{i, res, err}
		}()
	}
	sent.Wait()
	require.Eventually(t, func() bool { return c.b.Waiting.Load() == others+1 }, 5*time.Second, time.Millisecond)
	close(gate.release)
	require.NoError(t, <-firstDone)

	for range others + 1 {
		o := <-outs
		require.NoError(t, o.err, "request %d", o.i)
		require.False(t, o.res[0].Duplicate, "request %d", o.i)
		require.Equal(t, fmt.Sprintf("new%d", o.i), o.res[0].ID)
		if o.i == others {
			require.True(t, o.res[1].Duplicate)
			require.Equal(t, stored[0].Seq, o.res[1].Seq)
		}
	}
	gate.mu.Lock()
	defer gate.mu.Unlock()
	require.Len(t, gate.batches, 2, "the %d waiting requests were committed as one batch", others+1)
	require.Len(t, gate.batches[1], others+2)
}

// TestCommitterRespectsMaxBatch checks that batches never exceed MaxBatch,
// that a request's events stay together, and that Close refuses new work.
func TestCommitterRespectsMaxBatch(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	_, err := stream.Ensure(context.Background(), nc, stream.Config{})
	require.NoError(t, err)
	pub, err := events.NewPublisher(n.ConnectAs(t, natsauth.Ingest))
	require.NoError(t, err)
	gate := &gatedAppender{next: pub, entered: make(chan struct{}), release: make(chan struct{})}
	close(gate.release)
	c := NewCommitter(gate, CommitterConfig{MaxBatch: 10, Linger: 50 * time.Millisecond})
	go c.Run()

	var wg sync.WaitGroup
	for i := range 25 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			es := []events.Event{normalized(t, fmt.Sprintf("a%d", i)), normalized(t, fmt.Sprintf("b%d", i)), normalized(t, fmt.Sprintf("c%d", i))}
			res, err := c.Append(context.Background(), es)
			require.NoError(t, err)
			require.Len(t, res, 3)
			require.Equal(t, res[0].Seq+1, res[1].Seq, "a request's events are contiguous")
			require.Equal(t, res[1].Seq+1, res[2].Seq)
		}()
	}
	wg.Wait()
	c.Close()
	<-c.Done()
	_, err = c.Append(context.Background(), []events.Event{normalized(t, "late")})
	require.ErrorIs(t, err, ErrClosed)
	total := 0
	for _, b := range gate.batches {
		require.LessOrEqual(t, len(b), 10)
		total += len(b)
	}
	require.Equal(t, 75, total)
}

// gatedEach is a gatedAppender that also appends independently (as
// *events.Publisher does), recording how each call appended.
type gatedEach struct {
	gatedAppender
	pub   *events.Publisher
	calls []string // "each:<sorted ids>" or "atomic:<sorted ids>"
}

func (g *gatedEach) record(kind string, es []events.Event) {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	slices.Sort(ids) // concurrent requests join a group in any order
	g.mu.Lock()
	g.calls = append(g.calls, fmt.Sprintf("%s:%v", kind, ids))
	g.mu.Unlock()
}

func (g *gatedEach) AppendNormalized(ctx context.Context, es []events.Event) ([]events.Result, error) {
	g.once.Do(func() { close(g.entered); <-g.release })
	g.record("atomic", es)
	return g.pub.AppendNormalized(ctx, es)
}

func (g *gatedEach) AppendEach(ctx context.Context, es []events.Event) ([]events.Result, []error) {
	g.once.Do(func() { close(g.entered); <-g.release })
	g.record("each", es)
	return g.pub.AppendEach(ctx, es)
}

func tenantEvent(t *testing.T, tenant, id string) events.Event {
	t.Helper()
	e := events.Event{ID: id, Tenant: tenant, Action: "created", Eventable: events.Ref{Type: "card", ID: id}, Creator: events.Ref{Type: "user", ID: "u1"}}
	require.NoError(t, e.Normalize(time.Now()))
	return e
}

// onePerSubjectStream starts NATS with the EVENTS stream limited to one
// message per subject (discard new per subject), so the server refuses an
// event of tenant "full" (already holding one) and takes every other
// tenant's first event. It returns the publisher and the stream.
func onePerSubjectStream(t *testing.T) (*events.Publisher, jetstream.Stream) {
	t.Helper()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	str, err := stream.Ensure(ctx, nc, stream.Config{})
	require.NoError(t, err)
	info, err := str.Info(ctx)
	require.NoError(t, err)
	cfg := info.Config
	cfg.MaxMsgsPerSubject, cfg.Discard, cfg.DiscardNewPerSubject = 1, jetstream.DiscardNew, true
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	str, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	pub, err := events.NewPublisher(n.ConnectAs(t, natsauth.Ingest))
	require.NoError(t, err)
	_, err = pub.Append(ctx, events.Event{ID: "f0", Tenant: "full", Action: "created", Eventable: events.Ref{Type: "card", ID: "f0"}, Creator: events.Ref{Type: "user", ID: "u1"}})
	require.NoError(t, err)
	return pub, str
}

// storedIDs is every Nats-Msg-Id of the stream, by sequence.
func storedIDs(t *testing.T, str jetstream.Stream) map[string]uint64 {
	t.Helper()
	ctx := context.Background()
	info, err := str.Info(ctx)
	require.NoError(t, err)
	out := map[string]uint64{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := str.GetMsg(ctx, seq)
		require.NoError(t, err)
		out[m.Header.Get(events.HeaderMsgID)] = seq
	}
	return out
}

// groupOf holds the committer's only in-flight slot with a first request,
// submits reqs meanwhile so that they form one group, releases the slot
// and returns every request's outcome.
func groupOf(t *testing.T, c *Committer, gate *gatedEach, reqs [][]events.Event) ([][]events.Result, []error) {
	t.Helper()
	firstDone := make(chan error, 1)
	go func() {
		_, err := c.Append(context.Background(), []events.Event{tenantEvent(t, "warm", "w0")})
		firstDone <- err
	}()
	<-gate.entered
	results := make([][]events.Result, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() { results[i], errs[i] = c.Append(context.Background(), r) })
	}
	require.Eventually(t, func() bool { return c.b.Waiting.Load() == int64(len(reqs)) }, 5*time.Second, time.Millisecond)
	close(gate.release)
	require.NoError(t, <-firstDone)
	wg.Wait()
	return results, errs
}

// TestCommitterSingleEventGroupAnswersEachRequest: a group of single-event
// requests is appended as independent publishes; the ones the server
// refuses fail alone (503 for them), the others are stored and answered
// (202), and nothing is told the opposite of what happened. Retried, the
// stored ones are duplicates with their original sequence.
func TestCommitterSingleEventGroupAnswersEachRequest(t *testing.T) {
	t.Parallel()
	pub, str := onePerSubjectStream(t)
	gate := &gatedEach{gatedAppender: gatedAppender{entered: make(chan struct{}), release: make(chan struct{})}, pub: pub}
	c := NewCommitter(gate, CommitterConfig{MaxInflight: 1})
	go c.Run()
	defer func() { c.Close(); <-c.Done() }()

	const n = 12
	reqs := make([][]events.Event, n)
	for i := range n {
		tenant := fmt.Sprintf("t%d", i)
		if i%3 == 0 {
			tenant = "full"
		}
		reqs[i] = []events.Event{tenantEvent(t, tenant, fmt.Sprintf("e%d", i))}
	}
	results, errs := groupOf(t, c, gate, reqs)

	gate.mu.Lock()
	require.Len(t, gate.calls, 2)
	require.Regexp(t, `^each:\[(e\d+ ?){12}\]$`, gate.calls[1], "the group went as one pipelined AppendEach")
	gate.mu.Unlock()
	ids := storedIDs(t, str)
	for i := range n {
		id := fmt.Sprintf("e%d", i)
		msgID := events.MsgID(reqs[i][0].Tenant, id)
		if i%3 == 0 {
			require.ErrorIs(t, errs[i], events.ErrUnavailable, "request %d", i)
			require.NotContains(t, ids, msgID, "request %d was refused, so not stored", i)
			continue
		}
		require.NoError(t, errs[i], "request %d", i)
		require.Equal(t, []events.Result{{ID: id, Seq: ids[msgID]}}, results[i], "request %d is stored where it was told", i)
	}
	require.Len(t, ids, 1+1+n-4, "f0, w0 and the 8 accepted events")

	// A client retrying every request: the stored ones are de-duplicated.
	for i := range n {
		res, err := c.Append(context.Background(), reqs[i])
		if i%3 == 0 {
			require.ErrorIs(t, err, events.ErrUnavailable)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, []events.Result{{ID: results[i][0].ID, Seq: results[i][0].Seq, Duplicate: true}}, res)
	}
	require.Len(t, storedIDs(t, str), 1+1+n-4)
}

// TestCommitterMultiEventRequestStaysAtomic: in a group mixing single- and
// multi-event requests, the multi-event ones still go in one atomic batch:
// one refused event stores none of its request's events, and the
// single-event requests of the group are not failed with it.
func TestCommitterMultiEventRequestStaysAtomic(t *testing.T) {
	t.Parallel()
	pub, str := onePerSubjectStream(t)
	gate := &gatedEach{gatedAppender: gatedAppender{entered: make(chan struct{}), release: make(chan struct{})}, pub: pub}
	c := NewCommitter(gate, CommitterConfig{MaxInflight: 1})
	go c.Run()
	defer func() { c.Close(); <-c.Done() }()

	reqs := [][]events.Event{
		{tenantEvent(t, "s1", "s1")},
		{tenantEvent(t, "m1", "m1a"), tenantEvent(t, "full", "m1b"), tenantEvent(t, "m1c", "m1c")},
		{tenantEvent(t, "s2", "s2")},
		{tenantEvent(t, "s3", "s3")},
	}
	results, errs := groupOf(t, c, gate, reqs)

	gate.mu.Lock()
	require.ElementsMatch(t, []string{"each:[w0]", "each:[s1 s2 s3]", "atomic:[m1a m1b m1c]"}, gate.calls)
	gate.mu.Unlock()
	ids := storedIDs(t, str)
	require.ErrorIs(t, errs[1], events.ErrUnavailable)
	for _, id := range []string{"m1:m1a", "full:m1b", "m1c:m1c"} {
		require.NotContains(t, ids, id, "nothing of the refused request is stored")
	}
	for _, i := range []int{0, 2, 3} {
		require.NoError(t, errs[i])
		e := reqs[i][0]
		require.Equal(t, []events.Result{{ID: e.ID, Seq: ids[events.MsgID(e.Tenant, e.ID)]}}, results[i])
	}

	// Without the refused event the request is stored whole, contiguous.
	res, err := c.Append(context.Background(), []events.Event{reqs[1][0], reqs[1][2], tenantEvent(t, "m1d", "m1d")})
	require.NoError(t, err)
	require.Equal(t, res[0].Seq+1, res[1].Seq)
	require.Equal(t, res[1].Seq+1, res[2].Seq)
}
