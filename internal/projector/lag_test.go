package projector

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/pkg/events"
)

// TestLagAndReadiness: with no worker running, events pile up; lag is
// measured in messages and seconds, readiness fails beyond the allowed lag,
// and both recover once a worker catches up.
func TestLagAndReadiness(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	ctx := context.Background()
	str, err := b.js.Stream(ctx, events.StreamName)
	require.NoError(t, err)
	mon := &lagMonitor{cons: b.cons, str: str, every: 50 * time.Millisecond, maxLag: 200 * time.Millisecond, metrics: b.metrics}

	mon.measure(ctx)
	require.NoError(t, mon.ready(ctx), "nothing to project: ready")
	require.Zero(t, mon.last.Pending)

	in := make([]events.Event, 120)
	for i := range in {
		in[i] = ev("acme", fmt.Sprintf("e%d", i), "card", "c1", "moved")
	}
	_, err = b.pub.AppendBatch(ctx, in)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		mon.measure(ctx)
		return mon.ready(ctx) != nil
	}, 10*time.Second, 20*time.Millisecond, "not ready once the oldest pending event is older than max lag")
	require.EqualValues(t, 120, mon.last.Pending)
	require.Greater(t, mon.last.Behind, 200*time.Millisecond)
	require.ErrorContains(t, mon.ready(ctx), "behind the stream")
	require.EqualValues(t, 120, gaugeValue(b.metrics.pending))
	require.Greater(t, gaugeValue(b.metrics.lagSeconds), 0.2)

	b.worker(t, Config{}, nil)
	require.Eventually(t, func() bool {
		mon.measure(ctx)
		return mon.ready(ctx) == nil
	}, 10*time.Second, 20*time.Millisecond)
	require.Zero(t, mon.last.Pending)
	require.Zero(t, gaugeValue(b.metrics.lagSeconds))

	stale := &lagMonitor{cons: b.cons, str: str, every: time.Millisecond, metrics: b.metrics}
	require.Error(t, stale.ready(ctx), "never measured: not ready")
}
