package projector

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// TestCleanStopHandsMessagesBack stops workers again and again while a
// backlog flows, then starts one more: every event must be projected well
// within AckWait (5 minutes here). A clean stop must hand back what it has
// fetched — the batch being committed and what the client buffered — for
// immediate redelivery; before, those messages waited out AckWait, so a
// rolling restart left timelines stale for 30 s (found by the reliability
// suite, TestSIGTERMUnderLoad).
//
// Not parallel: projecting the backlog must not compete with other tests.
func TestCleanStopHandsMessagesBack(t *testing.T) {
	b := setup(t, ConsumerConfig{AckWait: 5 * time.Minute})
	ctx := context.Background()
	const total = 10000
	batch := make([]events.Event, 0, 1000)
	for i := range total {
		batch = append(batch, ev("acme", fmt.Sprintf("stop-%05d", i), "card", "c1", "moved"))
		if len(batch) == cap(batch) {
			_, err := b.pub.AppendBatch(ctx, batch)
			require.NoError(t, err)
			batch = batch[:0]
		}
	}
	for range 5 {
		before, _ := b.count(t)
		stop := b.worker(t, Config{BatchSize: 200}, nil)
		// Stop mid-flow: once this worker has projected a batch.
		testenv.Poll(t, time.Minute, "the worker projects", func() bool { n, _ := b.count(t); return n > before })
		stop()
	}
	b.worker(t, Config{BatchSize: 200}, nil)
	require.Eventually(t, func() bool { n, _ := b.count(t); return n >= total }, 2*time.Minute, 20*time.Millisecond,
		"every event projected well within AckWait (5 min)")
}
