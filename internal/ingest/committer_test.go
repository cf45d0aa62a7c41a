package ingest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

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
