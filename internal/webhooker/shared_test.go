package webhooker

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/pkg/events"
)

// TestSharedFanoutIsDueForAnyReplica: the deliveries of a shared fan-out
// are recorded due now and claimed by no one; the backlog gauges count
// them until a scheduler claims them, and the scheduler claims no more
// than its dispatcher has room for.
func TestSharedFanoutIsDueForAnyReplica(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, options{allowPrivate: true})
	rc := newReceiver(t, nil)
	var jobs []delivery.Job
	ev := events.Event{ID: "e-shared", Tenant: "acme", Action: "opened", Eventable: events.Ref{Type: "card", ID: "c42"}, Creator: events.Ref{Type: "user", ID: "u7"}}
	res, err := b.pub.Append(ctx, ev)
	require.NoError(t, err)
	require.NoError(t, ev.Normalize(time.Now()))
	ev.Seq = res.Seq
	for range 3 {
		id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"board.*"}}) // the live fan-out does not match card.opened
		jobs = append(jobs, delivery.Job{DeliveryID: delivery.NewID(), Tenant: ev.Tenant, EndpointID: id, Event: ev, Attempt: 1})
	}
	recordedAt := b.clock.Now()
	created, _, err := b.svc.ledger.Record(ctx, []delivery.Item{{Jobs: jobs, Shared: true}}, recordedAt, recordedAt.Add(time.Minute))
	require.NoError(t, err)
	require.Len(t, created[0], 3)
	var claims int
	require.NoError(t, b.pool.QueryRow(ctx, "SELECT count(*) FROM webhook.claims").Scan(&claims))
	require.Zero(t, claims, "claimed by no replica")

	b.clock.Add(2 * time.Second)
	require.NoError(t, b.svc.measureBacklog(ctx))
	require.Equal(t, 3.0, gauge(t, b.svc.metrics.dueNow), "due deliveries")
	require.InDelta(t, 2.0, gauge(t, b.svc.metrics.oldestDue), 0.001, "the oldest waited since it was recorded")

	// A scheduler whose dispatcher is full claims nothing.
	var sch scheduler
	require.Eventually(t, func() bool { // Run sets it once the registry is loaded
		b.svc.mu.Lock()
		defer b.svc.mu.Unlock()
		if b.svc.scheduler != nil {
			sch = *b.svc.scheduler
		}
		return b.svc.scheduler != nil
	}, 10*time.Second, 5*time.Millisecond)
	sch.queue = fullQueue{}
	n, err := sch.tick(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "no room: left to the other replicas")

	n, err = b.svc.ScheduleNow(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Eventually(t, func() bool { return len(rc.all()) == 3 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, b.svc.measureBacklog(ctx))
	require.Zero(t, gauge(t, b.svc.metrics.dueNow), "claimed: no longer due")
	require.Zero(t, gauge(t, b.svc.metrics.oldestDue))
}

// fullQueue is a dispatcher with no room.
type fullQueue struct{}

func (fullQueue) Submit(jobs ...delivery.Job) []delivery.Job { return jobs }
func (fullQueue) Room(int) int                               { return 0 }

func gauge(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, g.Write(&m))
	return m.GetGauge().GetValue()
}
