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

// TestSharedFanoutIsDueForAnyReplica: a shared fan-out is cut into chunks
// due now for any replica; the backlog gauges count their endpoints until
// a scheduler takes them; a scheduler takes no chunk its dispatcher has
// no room for; one that takes them attempts each delivery once and
// records it once, with its outcome, and the chunks go with the record.
func TestSharedFanoutIsDueForAnyReplica(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, options{allowPrivate: true})
	rc := newReceiver(t, nil)
	ev := b.publish(t, "e-shared")
	ids := b.endpointsNotMatching(t, rc.URL, 3)
	n, err := b.svc.ledger.Share(ctx, ev.Tenant, ev.ID, int64(ev.Seq), ids, 2, b.clock.Now(), false)
	require.NoError(t, err)
	require.Equal(t, 2, n, "chunks of two endpoints and of one")
	n, err = b.svc.ledger.Share(ctx, ev.Tenant, ev.ID, int64(ev.Seq), ids, 2, b.clock.Now(), true)
	require.NoError(t, err)
	require.Zero(t, n, "the same fan-out cut again (a redelivery) adds no chunk")

	b.clock.Add(2 * time.Second)
	require.NoError(t, b.svc.measureBacklog(ctx))
	require.Equal(t, 3.0, gauge(t, b.svc.metrics.dueNow), "due deliveries")
	require.InDelta(t, 2.0, gauge(t, b.svc.metrics.oldestDue), 0.001, "the oldest waited since it was recorded")

	// A scheduler whose dispatcher is full takes nothing.
	full := &scheduler{ledger: b.svc.ledger, queue: fullQueue{}, now: b.clock.Now, claim: time.Minute, hold: 1024, chunkSize: 2,
		leases: newLeases(b.svc.ledger, time.Minute, b.clock.Now, nil), log: b.svc.log, metrics: b.svc.metrics,
		work: func(context.Context, delivery.Chunk, events.Event, []byte) { t.Error("a full dispatcher took a chunk") }}
	taken, err := full.tick(ctx)
	require.NoError(t, err)
	require.Zero(t, taken, "no room: left to the other replicas")

	waitRunning(t, b)
	taken, err = b.svc.ScheduleNow(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, taken)
	require.Eventually(t, func() bool {
		return b.count(t, `SELECT count(*) FROM webhook.chunks`) == 0
	}, 10*time.Second, 10*time.Millisecond, "each chunk goes with its record")
	require.Len(t, rc.all(), 3, "one request per endpoint")
	require.Equal(t, 3, b.count(t, `SELECT count(*) FROM webhook.deliveries WHERE event_id = 'e-shared' AND status = 'succeeded' AND attempts = 1`))
	require.Equal(t, 3, b.count(t, `SELECT count(*) FROM webhook.attempts a JOIN webhook.deliveries d ON d.id = a.delivery_id WHERE d.event_id = 'e-shared'`))
	require.NoError(t, b.svc.measureBacklog(ctx))
	require.Zero(t, gauge(t, b.svc.metrics.dueNow), "taken: no longer due")
	require.Zero(t, gauge(t, b.svc.metrics.oldestDue))
}

// TestChunkTakenOverIsRecordedFirst: a chunk whose claim by another replica
// ended (it died after making some of its deliveries) is recorded before
// it is attempted, and only the deliveries that did not exist are sent.
func TestChunkTakenOverIsRecordedFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, options{allowPrivate: true})
	rc := newReceiver(t, nil)
	ev := b.publish(t, "e-taken")
	ids := b.endpointsNotMatching(t, rc.URL, 3)
	// The other replica recorded its first endpoint's delivery, then died.
	_, _, err := b.svc.ledger.Record(ctx, []delivery.Item{{
		Jobs: []delivery.Job{{DeliveryID: delivery.NewID(), Tenant: ev.Tenant, EndpointID: ids[0], Event: ev, Attempt: 1}},
	}}, b.clock.Now(), b.clock.Now().Add(time.Minute))
	require.NoError(t, err)
	_, err = b.pool.Exec(ctx, `DELETE FROM webhook.claims`) // its delivery stays as it was: not due again here
	require.NoError(t, err)
	_, err = b.pool.Exec(ctx, `INSERT INTO webhook.chunks (tenant, event_id, event_seq, n, endpoint_ids, due_at, claimed_by) VALUES ($1, $2, $3, 0, $4, $5, 'dead')`,
		ev.Tenant, ev.ID, int64(ev.Seq), ids, b.clock.Now().Add(-time.Second))
	require.NoError(t, err)

	waitRunning(t, b)
	taken, err := b.svc.ScheduleNow(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, taken)
	require.Eventually(t, func() bool { return len(rc.all()) == 2 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		return b.count(t, `SELECT count(*) FROM webhook.chunks`) == 0
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, 3, b.count(t, `SELECT count(*) FROM webhook.deliveries WHERE event_id = 'e-taken'`), "one delivery per endpoint")
	require.Eventually(t, func() bool {
		return b.count(t, `SELECT count(*) FROM webhook.deliveries WHERE event_id = 'e-taken' AND status = 'succeeded'`) == 2
	}, 10*time.Second, 10*time.Millisecond, "the two it created, sent and logged")
	require.Len(t, rc.all(), 2, "the delivery that existed is not sent by the chunk")
}

// endpointsNotMatching creates n endpoints posting to url that want
// board.* events only: the live fan-out of the events the tests publish
// (card.closed) does not reach them, so the tests share those events
// themselves (Ledger.Share).
func (b *bundle) endpointsNotMatching(t *testing.T, url string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i], _ = b.createEndpoint(t, map[string]any{"url": url, "events": []string{"board.*"}})
	}
	return ids
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
