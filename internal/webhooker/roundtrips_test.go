package webhooker

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/delivery"
)

// What one event to one endpoint costs in Postgres round trips at low
// rates, where every round trip wakes the webhooker and its backend
// (BENCHMARKS.md, "Where the CPU goes at low rates"), and what the
// periodic passes cost while idle. The counts are exact: the service's
// pools dial through testenv.RoundTrips, which counts every round trip
// on a Postgres socket — BEGIN, COMMIT, pings and statement preparations
// included.
const (
	// roundTripsOneEvent: the fan-out's one insert of the delivery with
	// its attempt, outside any transaction (Ledger.Record).
	roundTripsOneEvent = 1
	// roundTripsIdlePass: a scheduler pass with nothing due expires
	// claims and looks for due tenants in one pipelined implicit
	// transaction (Ledger.ClaimDue); it was 4 (BEGIN, the two
	// statements, COMMIT).
	roundTripsIdlePass = 1
	// roundTripsRefresh: a registry refresh with no change reads the
	// horizon and the changed endpoints in one pipeline
	// (Store.changedSince); it was 2.
	roundTripsRefresh = 1
	// roundTripsLogSucceeded: the result writer's batch of successes
	// (Ledger.Log), the attempts logged and the trackers cleared in one
	// pipelined implicit transaction; it was 4 (BEGIN, the two
	// statements, COMMIT).
	roundTripsLogSucceeded = 1
	// roundTripsLogFailed: a batch with a failure of one endpoint — BEGIN
	// with the log statement, the endpoint's tracker, COMMIT; it was 4.
	roundTripsLogFailed = 3
	// roundTripsRecordFailed: a first attempt that failed recorded with
	// its outcome (Ledger.Record) — BEGIN with the insert, the tracker,
	// COMMIT; it was 4.
	roundTripsRecordFailed = 3
	// roundTripsClaim: a scheduler pass that claims due deliveries of one
	// tenant — the claims expired and the due tenants (one pipeline),
	// BEGIN with the claim, the claimers written, COMMIT; it was 6.
	roundTripsClaim = 4
)

// countedSetup is setup with every Postgres round trip of the service
// counted, and no periodic work of its own: the registry refreshes and
// the scheduler and the backlog gauges run only when the test says.
func countedSetup(t *testing.T) (*bundle, *testenv.RoundTrips) {
	t.Helper()
	c := &testenv.RoundTrips{}
	b := setup(t, options{allowPrivate: true, pgConfig: c.Configure, cfg: Config{
		RefreshEvery: time.Hour, LagEvery: time.Hour,
		// No endpoint counts as slow on a loaded machine: the event
		// counted takes the attempt-first path.
		FirstAttempt: FirstAttemptConfig{Wait: 10 * time.Second, Max: 20 * time.Second},
	}})
	waitRunning(t, b)
	return b, c
}

// waitRunning waits until Run has wired the parts (the registry
// loaded) and the passes it starts with (a prune, a backlog measurement)
// have ended.
func waitRunning(t *testing.T, b *bundle) {
	t.Helper()
	require.Eventually(t, func() bool {
		b.svc.mu.Lock()
		defer b.svc.mu.Unlock()
		return b.svc.scheduler != nil
	}, 10*time.Second, 5*time.Millisecond)
	select {
	case <-b.svc.settled:
	case <-time.After(30 * time.Second):
		t.Fatal("the first prune and backlog measurement did not end")
	}
}

// TestOneEventOneEndpointRoundTrips: handling one event to one endpoint
// that answers 200 — its first attempt, the record of its delivery with
// the outcome, the ack — costs roundTripsOneEvent Postgres round trips.
func TestOneEventOneEndpointRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, c := countedSetup(t)
	rc := newReceiver(t, nil)
	code, out := b.call(t, http.MethodPost, "/v1/webhooks", map[string]any{"url": rc.URL, "events": []string{"card.*"}})
	require.Equal(t, http.StatusCreated, code, "%v", out)
	id := out["id"].(string)
	require.NoError(t, b.svc.registry.Refresh(ctx))
	_, ok := b.svc.registry.Get(id)
	require.True(t, ok)

	// The first event warms the statement cache and the HTTP connection.
	first := b.publish(t, "e-rt-warm")
	b.waitFannedOut(t, first.Seq)
	<-rc.got

	c.Start()
	ev := b.publish(t, "e-rt-counted")
	b.waitFannedOut(t, ev.Seq)
	n, sql := c.Stop()
	<-rc.got

	ds := b.deliveries(t, id)
	require.Len(t, ds, 2)
	for _, d := range ds {
		require.Equal(t, delivery.StatusSucceeded, d.Status, "%+v", d)
		require.Len(t, d.Attempts, 1)
	}
	t.Logf("one event to one endpoint: %d Postgres round trips:\n%s", n, sql)
	require.LessOrEqual(t, n, roundTripsOneEvent, "Postgres round trips of one event to one endpoint:\n%s", sql)
}

// TestIdlePassesRoundTrips: while nothing is due and no endpoint changes,
// a scheduler pass costs roundTripsIdlePass round trips and a registry
// refresh roundTripsRefresh.
func TestIdlePassesRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, c := countedSetup(t)
	// Warm the statement caches.
	_, err := b.svc.ScheduleNow(ctx)
	require.NoError(t, err)
	require.NoError(t, b.svc.registry.Refresh(ctx))

	c.Start()
	n, err := b.svc.ScheduleNow(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	trips, sql := c.Stop()
	t.Logf("idle scheduler pass: %d round trips:\n%s", trips, sql)
	require.LessOrEqual(t, trips, roundTripsIdlePass, "round trips of an idle scheduler pass:\n%s", sql)

	c.Start()
	require.NoError(t, b.svc.registry.Refresh(ctx))
	trips, sql = c.Stop()
	t.Logf("registry refresh: %d round trips:\n%s", trips, sql)
	require.LessOrEqual(t, trips, roundTripsRefresh, "round trips of a registry refresh:\n%s", sql)
}

// TestLedgerRoundTrips: the result writer's batches and the record of a
// failed first attempt cost roundTripsLogSucceeded, roundTripsLogFailed
// and roundTripsRecordFailed round trips, and write what they wrote when
// they took more.
func TestLedgerRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, c := countedSetup(t)
	code, out := b.call(t, http.MethodPost, "/v1/webhooks", map[string]any{"url": "http://127.0.0.1:1/hooks", "events": []string{"board.*"}})
	require.Equal(t, http.StatusCreated, code, "%v", out)
	ep := out["id"].(string)
	l := b.svc.ledger
	now := b.clock.Now()
	job := func(n int) delivery.Job {
		ev := b.publish(t, fmt.Sprintf("e-ledger-rt-%d", n))
		return delivery.Job{DeliveryID: delivery.NewID(), Tenant: "acme", EndpointID: ep, Event: ev, Attempt: 1}
	}
	succeeded := func(j delivery.Job) delivery.Outcome {
		return delivery.Outcome{Job: j, Attempt: delivery.Attempt{N: 1, At: now, DurationMS: 3, StatusCode: 200}, Succeeded: true, FinishedAt: now}
	}
	failed := func(j delivery.Job) delivery.Outcome {
		return delivery.Outcome{Job: j, Attempt: delivery.Attempt{N: 1, At: now, DurationMS: 3, StatusCode: 500, ErrorClass: "status"},
			Retry: true, RetryIn: 5 * time.Second, FinishedAt: now}
	}
	count := func(what string, limit int, fn func()) {
		t.Helper()
		fn() // warms the statement cache: the first of each prepares it
		c.Start()
		fn()
		n, sql := c.Stop()
		t.Logf("%s: %d round trips:\n%s", what, n, sql)
		require.LessOrEqual(t, n, limit, "round trips of %s:\n%s", what, sql)
	}
	recordClaimed := func() delivery.Job {
		j := job(int(time.Now().UnixNano()))
		created, _, err := l.Record(ctx, []delivery.Item{{Jobs: []delivery.Job{j}}}, now, now.Add(time.Minute))
		require.NoError(t, err)
		require.Len(t, created[0], 1)
		return created[0][0]
	}
	var js []delivery.Job
	for range 2 {
		js = append(js, recordClaimed())
	}
	count("a logged success", roundTripsLogSucceeded, func() {
		j := js[0]
		js = js[1:]
		_, err := l.Log(ctx, []delivery.Outcome{succeeded(j)})
		require.NoError(t, err)
	})
	js = js[:0]
	for range 2 {
		js = append(js, recordClaimed())
	}
	count("a logged failure", roundTripsLogFailed, func() {
		j := js[0]
		js = js[1:]
		_, err := l.Log(ctx, []delivery.Outcome{failed(j)})
		require.NoError(t, err)
	})
	count("a first attempt recorded failed", roundTripsRecordFailed, func() {
		j := job(int(time.Now().UnixNano()))
		created, _, err := l.Record(ctx, []delivery.Item{{Jobs: []delivery.Job{j}, Done: []delivery.Outcome{failed(j)}}}, now, now.Add(time.Minute))
		require.NoError(t, err)
		require.Empty(t, created[0], "recorded with its outcome")
	})
	// The four failures are due in 5 s: claimed two at a time (the
	// first claim warms the statement cache).
	later := now.Add(10 * time.Second)
	claimed, _, err := l.ClaimDue(ctx, later, later.Add(time.Minute), "replica-a", 2, 0)
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	c.Start()
	claimed, _, err = l.ClaimDue(ctx, later, later.Add(time.Minute), "replica-a", 2, 0)
	n, sql := c.Stop()
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	t.Logf("a claim of due deliveries: %d round trips:\n%s", n, sql)
	require.LessOrEqual(t, n, roundTripsClaim, "round trips of a claim:\n%s", sql)
	// What was counted was written: 2 successes, and 4 failures that
	// moved the endpoint's tracker and are due for their retries.
	var succeededN, due, failures int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM webhook.deliveries WHERE endpoint_id = $1 AND status = 'succeeded'),
			(SELECT count(*) FROM webhook.due u JOIN webhook.deliveries d ON d.id = u.delivery_id WHERE d.endpoint_id = $1 AND d.attempts = 1),
			(SELECT consecutive_failures FROM webhook.endpoints WHERE id = $1)`, ep).Scan(&succeededN, &due, &failures))
	require.Equal(t, 2, succeededN)
	require.Equal(t, 4, due)
	require.Equal(t, 4, failures)
}
