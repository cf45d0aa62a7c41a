package projector

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/pkg/events"
)

// items are n decodable messages from seq first on.
func pipelinedItems(first, n int) []item {
	items := make([]item, n)
	for i := range items {
		seq := first + i
		e := ev("acme", fmt.Sprintf("p%d", seq), "card", "c1", "moved", events.Ref{Type: "board", ID: "b1"})
		e.Seq = uint64(seq)
		e.OccurredAt, e.RecordedAt = time.Now(), time.Now()
		items[i] = item{seq: uint64(seq), event: e}
	}
	return items
}

func eventsIn(t *testing.T, b *bundle, g int) (n int, progress int64) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, b.pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.events`, schema(g))).Scan(&n))
	_ = b.pool.QueryRow(ctx, fmt.Sprintf(`SELECT last_seq FROM %s.progress WHERE consumer = $1`, schema(g)), DefaultConsumer).Scan(&progress)
	return n, progress
}

// TestPipelinedCommitFollowsTheCurrentGeneration: a batch goes in one
// round trip into the generation the worker last locked, and only while it
// is current; when another generation is current the pipeline writes
// nothing and the batch lands, through the slow path, in the current one.
func TestPipelinedCommitFollowsTheCurrentGeneration(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	ctx := context.Background()
	p := New(b.cons, b.pool, Config{}, b.metrics, b.log)

	_, ok := p.commitPipelined(ctx, pipelinedItems(1, 3))
	require.False(t, ok, "no generation known yet: the slow path locks one first")
	res, err := p.commit(ctx, pipelinedItems(1, 3))
	require.NoError(t, err)
	require.Equal(t, 3, res.projected)
	require.EqualValues(t, 1, p.gen.Load())

	res, ok = p.commitPipelined(ctx, pipelinedItems(4, 5))
	require.True(t, ok)
	require.Equal(t, 5, res.projected)
	n, progress := eventsIn(t, b, 1)
	require.Equal(t, 8, n)
	require.EqualValues(t, 8, progress)

	// A generation that exists but is not current (a rebuild switched
	// away from it, or has not switched to it yet).
	for _, table := range []string{"events", "entries", "progress"} {
		_, err := b.pool.Exec(ctx, fmt.Sprintf(`CREATE SCHEMA IF NOT EXISTS timeline_g5; CREATE TABLE timeline_g5.%[1]s (LIKE timeline_g1.%[1]s INCLUDING ALL)`, table))
		require.NoError(t, err)
	}
	p.gen.Store(5)
	_, ok = p.commitPipelined(ctx, pipelinedItems(9, 2))
	require.False(t, ok, "generation 5 is not current")
	require.Zero(t, p.gen.Load())
	n, progress = eventsIn(t, b, 5)
	require.Zero(t, n, "nothing written into a generation that is not current")
	require.Zero(t, progress)

	p.gen.Store(5)
	res, err = p.commit(ctx, pipelinedItems(9, 2))
	require.NoError(t, err)
	require.Equal(t, 2, res.projected)
	require.EqualValues(t, 1, p.gen.Load())
	n, progress = eventsIn(t, b, 1)
	require.Equal(t, 10, n)
	require.EqualValues(t, 10, progress)
	n, _ = eventsIn(t, b, 5)
	require.Zero(t, n)
}

// TestPipelinedCommitIsOneTransaction: when the checkpoint cannot be
// written, the events of the same pipeline are not written either.
func TestPipelinedCommitIsOneTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	ctx := context.Background()
	p := New(b.cons, b.pool, Config{}, b.metrics, b.log)
	_, err := p.commit(ctx, pipelinedItems(1, 1))
	require.NoError(t, err)

	// The checkpoint fails on a value its column refuses.
	_, err = b.pool.Exec(ctx, `ALTER TABLE timeline_g1.progress ADD CONSTRAINT below_100 CHECK (last_seq < 100)`)
	require.NoError(t, err)
	_, ok := p.commitPipelined(ctx, pipelinedItems(100, 3))
	require.False(t, ok)
	n, progress := eventsIn(t, b, 1)
	require.Equal(t, 1, n, "the events of a failed pipeline are rolled back with its checkpoint")
	require.EqualValues(t, 1, progress)

	_, err = b.pool.Exec(ctx, `ALTER TABLE timeline_g1.progress DROP CONSTRAINT below_100`)
	require.NoError(t, err)
	p.gen.Store(1)
	_, ok = p.commitPipelined(ctx, pipelinedItems(100, 3))
	require.True(t, ok)
	n, progress = eventsIn(t, b, 1)
	require.Equal(t, 4, n)
	require.EqualValues(t, 102, progress)
}
