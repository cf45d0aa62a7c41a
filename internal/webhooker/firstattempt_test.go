package webhooker

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func (b *bundle) count(t *testing.T, sql string) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), sql).Scan(&n))
	return n
}

// TestFirstAttemptIsRecordedWithItsDelivery: a first attempt that
// finishes while the fan-out waits is written with its delivery, in one
// insert: no claim, no later update; a failed one is written pending with
// its retry due.
func TestFirstAttemptIsRecordedWithItsDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	ok := newReceiver(t, nil)
	failing := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	okID, _ := b.createEndpoint(t, map[string]any{"url": ok.URL, "events": []string{"card.*"}})
	failID, _ := b.createEndpoint(t, map[string]any{"url": failing.URL, "events": []string{"card.*"}, "retry_schedule": []int{3600}})
	b.publish(t, "e1")

	d := b.waitStatus(t, okID, "succeeded", 1)[0]
	require.Len(t, d.Attempts, 1)
	require.Equal(t, 200, d.Attempts[0].StatusCode)
	f := b.waitAttempts(t, failID, 1)[0]
	require.Equal(t, "pending", f.Status)
	require.Equal(t, 500, f.Attempts[0].StatusCode)
	require.NotNil(t, f.NextAttemptAt)
	require.WithinDuration(t, f.Attempts[0].At.Add(time.Hour), *f.NextAttemptAt, time.Second, "due after the schedule's first step")

	require.Zero(t, b.count(t, `SELECT count(*) FROM webhook.claims`), "attempted before it was recorded: nothing claimed")
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM webhook.due`), "the retry is due")
	require.Equal(t, 1, b.count(t, `SELECT consecutive_failures FROM webhook.endpoints WHERE id = '`+failID+`'`), "the failure tracker moved with the record")

	b.clock.Add(time.Hour + time.Second)
	n, err := b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n, "the retry, and nothing else")
	b.waitAttempts(t, failID, 2)
	require.Len(t, ok.all(), 1)
}

// TestSlowFirstAttemptIsRecordedWithoutWaiting: when an attempt outlasts
// the wait, the delivery is recorded claimed and the event acked while the
// attempt still runs; its outcome is logged when it comes, and the claim
// does not make the scheduler attempt it again.
func TestSlowFirstAttemptIsRecordedWithoutWaiting(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	b := setup(t, options{allowPrivate: true, cfg: Config{FirstAttempt: FirstAttemptConfig{Wait: 20 * time.Millisecond}}})
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, _ *http.Request) { <-release })
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"card.*"}})
	b.publish(t, "e1")
	require.Eventually(t, func() bool { return len(rc.all()) == 1 }, 10*time.Second, 5*time.Millisecond, "the attempt is running")
	requireRecordedAndAcked := func(n int) {
		t.Helper()
		require.Eventually(t, func() bool {
			ds := b.deliveries(t, id)
			if len(ds) != n {
				return false
			}
			for _, d := range ds {
				if d.Status != "pending" || len(d.Attempts) != 0 {
					return false
				}
			}
			info, err := b.js.Consumer(context.Background(), "EVENTS", DefaultConsumer)
			require.NoError(t, err)
			ci, err := info.Info(context.Background())
			require.NoError(t, err)
			return ci.NumAckPending == 0 && ci.NumPending == 0
		}, 10*time.Second, 5*time.Millisecond, "%d deliveries recorded claimed and their events acked while the attempts run", n)
	}
	requireRecordedAndAcked(1)
	// Now known to be slow: the next event is recorded, then attempted.
	b.publish(t, "e2")
	requireRecordedAndAcked(2)
	require.Equal(t, 2, b.count(t, `SELECT count(*) FROM webhook.claims`))

	close(release)
	for _, d := range b.waitStatus(t, id, "succeeded", 2) {
		require.Len(t, d.Attempts, 1, "delivery of %s", d.EventID)
	}
	b.clock.Add(61 * time.Second)
	n, err := b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	require.Zero(t, n, "the claims expire on deliveries that were attempted")
	require.Len(t, rc.all(), 2)
}

// TestEndpointSpeed: an endpoint is slow from an attempt that outlasts the
// wait, or a wait that ended without it, until an attempt is fast again.
func TestEndpointSpeed(t *testing.T) {
	s := &endpointSpeed{slowAfter: 50 * time.Millisecond}
	require.False(t, s.isSlow("a"), "unknown endpoints are waited for")
	s.observe("a", 10*time.Millisecond)
	require.False(t, s.isSlow("a"))
	s.observe("a", 50*time.Millisecond)
	require.True(t, s.isSlow("a"))
	s.observe("a", time.Millisecond)
	require.False(t, s.isSlow("a"))
	s.markSlow("b")
	require.True(t, s.isSlow("b"))
	require.False(t, s.isSlow("a"))
}
