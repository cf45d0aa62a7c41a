package projector

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/consumerlag"
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
	cm := consumerlag.NewMetrics(prometheus.NewRegistry())
	mon := consumerlag.NewMonitor(b.cons, str, cm, consumerlag.Config{Consumer: "projector", Every: 50 * time.Millisecond, MaxLag: 200 * time.Millisecond,
		OnMeasure: func(l consumerlag.Lag) { b.metrics.lagSeconds.Set(l.Behind.Seconds()) }})

	mon.Measure(ctx)
	require.NoError(t, mon.Ready(ctx), "nothing to project: ready")
	require.Zero(t, mon.Last().Pending)

	in := make([]events.Event, 120)
	for i := range in {
		in[i] = ev("acme", fmt.Sprintf("e%d", i), "card", "c1", "moved")
	}
	_, err = b.pub.AppendBatch(ctx, in)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		mon.Measure(ctx)
		return mon.Ready(ctx) != nil
	}, 10*time.Second, 20*time.Millisecond, "not ready once the oldest pending event is older than max lag")
	require.EqualValues(t, 120, mon.Last().Pending)
	require.Greater(t, mon.Last().Behind, 200*time.Millisecond)
	require.ErrorContains(t, mon.Ready(ctx), "behind the stream")
	require.EqualValues(t, 120, gaugeValue(cm.Pending("projector")))
	require.Greater(t, gaugeValue(b.metrics.lagSeconds), 0.2)

	b.worker(t, Config{}, nil)
	require.Eventually(t, func() bool {
		mon.Measure(ctx)
		return mon.Ready(ctx) == nil
	}, 10*time.Second, 20*time.Millisecond)
	require.Zero(t, mon.Last().Pending)
	require.Zero(t, gaugeValue(b.metrics.lagSeconds))

	stale := consumerlag.NewMonitor(b.cons, str, cm, consumerlag.Config{Consumer: "projector", Every: time.Millisecond})
	require.Error(t, stale.Ready(ctx), "never measured: not ready")
}
