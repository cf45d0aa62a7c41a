package webhooker

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/webhooker/delivery"
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
	// A wait that no answer outlasts on a loaded machine: with the default
	// 50 ms, a starved replica records the delivery claimed first, which
	// is right (TestSlowFirstAttemptIsRecordedWithoutWaiting) but not what
	// this test is about.
	b := setup(t, options{allowPrivate: true, cfg: Config{FirstAttempt: FirstAttemptConfig{Wait: time.Minute, Max: time.Minute}}})
	ok := newReceiver(t, nil)
	failing := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	okID, _ := b.createEndpoint(t, map[string]any{"url": ok.URL, "events": []string{"card.*"}})
	failID, _ := b.createEndpoint(t, map[string]any{"url": failing.URL, "events": []string{"card.*"}, "retry_schedule": []int{3600}})
	b.publish(t, "e1")

	d := b.waitStatus(t, okID, "succeeded", 1)[0]
	require.Len(t, d.Attempts, 1)
	require.Equal(t, 200, d.Attempts[0].StatusCode)
	f := b.waitAttempts(t, failID, 1)[0]
	require.Equal(t, delivery.StatusPending, f.Status)
	require.Equal(t, 500, f.Attempts[0].StatusCode)
	require.NotNil(t, f.NextAttemptAt)
	require.WithinDuration(t, f.Attempts[0].At.Add(time.Hour), *f.NextAttemptAt, time.Second, "due after the schedule's first step")

	require.Zero(t, b.count(t, `SELECT count(*) FROM webhook.claims`), "attempted before it was recorded: nothing claimed")
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM webhook.due`), "the retry is due")
	failures := `SELECT consecutive_failures FROM webhook.endpoints WHERE id = '` + failID + `'`
	require.Equal(t, 1, b.count(t, failures), "the failure tracker moved with the record")

	// The endpoint answers again: the next event's success, recorded with
	// its delivery, clears the tracker.
	b.publish(t, "e2")
	b.waitStatus(t, okID, "succeeded", 2)
	require.Eventually(t, func() bool { return len(failing.all()) == 2 && b.count(t, failures) == 0 }, 10*time.Second, 5*time.Millisecond)

	b.clock.Add(time.Hour + time.Second)
	n, err := b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n, "the retry, and nothing else")
	for _, d := range b.waitStatus(t, failID, "succeeded", 2) {
		if d.EventID == "e1" {
			require.Len(t, d.Attempts, 2)
		}
	}
	require.Len(t, ok.all(), 2)
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
				if d.Status != delivery.StatusPending || len(d.Attempts) != 0 {
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

// TestEndpointSpeed: an endpoint is slow while its latest answer took
// longer than the wait, for 10 s after a wait that gave up on it at Max,
// and for 1 s after one that ended idle without its attempt.
func TestEndpointSpeed(t *testing.T) {
	clk := &clock{t: time.Now()}
	s := newEndpointSpeed(50 * time.Millisecond)
	s.now = clk.Now
	require.False(t, s.isSlow("a"), "unknown endpoints are waited for")
	require.False(t, s.answeredWithin("a", time.Second))
	s.observe("a", 10*time.Millisecond)
	require.False(t, s.isSlow("a"))
	require.True(t, s.answeredWithin("a", time.Millisecond))
	s.observe("a", 50*time.Millisecond)
	require.True(t, s.isSlow("a"))
	s.observe("a", time.Millisecond)
	require.False(t, s.isSlow("a"), "one slow answer (the replica starved of CPU) is forgotten at the next fast one")
	s.markSlow("b", true)
	s.markSlow("c", false)
	s.observe("b", time.Millisecond)
	require.True(t, s.isSlow("b"), "a fast attempt (a rate-limited endpoint's) does not clear a wait that gave up on it")
	require.True(t, s.isSlow("c"))
	clk.Add(s.idleHold + time.Millisecond)
	require.False(t, s.isSlow("c"), "a wait that ended idle counts for idleHold only")
	require.True(t, s.isSlow("b"))
	clk.Add(s.hold)
	require.False(t, s.answeredWithin("a", s.hold))
	require.False(t, s.isSlow("b"), "waited for again after the hold")
}

// TestEndpointSpeedForgets: what is known of endpoints that stopped
// answering is dropped after forget, so the maps do not grow with every
// endpoint a replica ever attempted; recent answers and marks stay.
func TestEndpointSpeedForgets(t *testing.T) {
	clk := &clock{t: time.Now()}
	s := newEndpointSpeed(50 * time.Millisecond)
	s.now = clk.Now
	for i := range 1000 {
		s.observe(fmt.Sprintf("old-%d", i), 100*time.Millisecond)
		s.markSlow(fmt.Sprintf("old-%d", i), true)
	}
	require.Equal(t, 1000, mapLen(&s.answers))
	clk.Add(s.forget - time.Minute)
	s.observe("recent", 100*time.Millisecond)
	s.markSlow("recent", true)
	require.Never(t, func() bool { return mapLen(&s.answers) != 1001 }, 50*time.Millisecond, time.Millisecond,
		"nothing is older than forget yet")
	clk.Add(2 * time.Minute)
	s.observe("new", time.Millisecond)
	require.Eventually(t, func() bool { return mapLen(&s.answers) == 2 }, 10*time.Second, time.Millisecond,
		"the endpoints silent for longer than forget are forgotten")
	require.Eventually(t, func() bool { return mapLen(&s.until) == 1 }, 10*time.Second, time.Millisecond,
		"the marks that ended longer than forget ago are forgotten")
	require.True(t, s.isSlow("recent"), "a recent slow answer stays")
	require.True(t, s.answeredWithin("recent", 3*time.Minute))
	require.False(t, s.isSlow("old-1"), "a forgotten endpoint is waited for, as a new one")
}

// BenchmarkEndpointSpeedSweep: one sweep of 100,000 endpoints' entries,
// none old enough to go, which observe starts at most once a minute.
func BenchmarkEndpointSpeedSweep(b *testing.B) {
	clk := &clock{t: time.Now()}
	s := newEndpointSpeed(50 * time.Millisecond)
	s.now = clk.Now
	for i := range 100_000 {
		s.observe(strconv.Itoa(i), time.Millisecond)
		s.markSlow(strconv.Itoa(i), true)
	}
	horizon := clk.Now().Add(-s.forget).UnixNano()
	for b.Loop() {
		s.forgetBefore(horizon)
	}
	if mapLen(&s.answers) != 100_000 {
		b.Fatal("the sweep dropped recent entries")
	}
}

func mapLen(m *sync.Map) int {
	n := 0
	m.Range(func(any, any) bool { n++; return true })
	return n
}

// TestWaitWhileQueueMoves: the wait for an attempt queued behind its
// endpoint's earlier ones goes on while that endpoint answers others, up
// to Max; it ends after Wait when the endpoint answers nothing.
func TestWaitWhileQueueMoves(t *testing.T) {
	t.Parallel()
	j := delivery.Job{DeliveryID: "a", EndpointID: "x"}
	cfg := FirstAttemptConfig{Wait: time.Millisecond, Max: time.Minute}

	w := newFirstAttempts()
	w.attempting([]delivery.Job{j})
	asked := 0
	done, capped := w.wait(cfg, func(ep string) bool {
		require.Equal(t, "x", ep)
		if asked++; asked == 3 {
			go w.take(delivery.Outcome{Job: j}) // its turn came
		}
		return true
	}, nil)
	require.Len(t, done, 1, "waited past three idle periods while the queue moved")
	require.False(t, capped)

	w = newFirstAttempts()
	w.attempting([]delivery.Job{j})
	done, capped = w.wait(cfg, func(string) bool { return false }, nil)
	require.Empty(t, done, "the endpoint answers nothing: the wait ends")
	require.False(t, capped)

	w = newFirstAttempts()
	w.attempting([]delivery.Job{j})
	cfg.Max = 20 * time.Millisecond
	done, capped = w.wait(cfg, func(string) bool { return true }, nil)
	require.Empty(t, done)
	require.True(t, capped, "Max bounds the wait")

	w = newFirstAttempts()
	w.attempting([]delivery.Job{j})
	w.dropped([]delivery.Job{j})
	done, _ = w.wait(cfg, func(string) bool { t.Fatal("nothing to wait for"); return true }, nil)
	require.Empty(t, done)
}

// TestRecordSplitsLargeFanOut: an event to more endpoints than one insert
// takes is recorded in several statements, every delivery once, and the
// chunk they come from goes with the last statement.
func TestRecordSplitsLargeFanOut(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	inserts := newInserts(b.svc.ledger, nil, newLeases(b.svc.ledger, time.Minute, b.clock.Now, nil), b.clock.Now, time.Minute)
	go inserts.Run()
	defer inserts.Close()
	f := &fanout{inserts: inserts, gate: &firstGate{}}
	ev := b.publish(t, "big")
	jobs := make([]delivery.Job, 2*maxInsert+1)
	for i := range jobs {
		jobs[i] = delivery.Job{DeliveryID: delivery.NewID(), Tenant: "acme", EndpointID: fmt.Sprintf("ep-%d", i), Event: ev, Attempt: 1}
	}
	var chunk int64
	require.NoError(t, b.pool.QueryRow(context.Background(), `INSERT INTO webhook.chunks (tenant, event_id, event_seq, n, endpoint_ids, due_at)
		VALUES ('acme', 'big', $1, 0, '{}', now()) RETURNING id`, int64(ev.Seq)).Scan(&chunk))
	created, err := f.record(context.Background(), jobs, nil, chunk)
	require.NoError(t, err)
	require.Len(t, created, len(jobs))
	require.Equal(t, len(jobs), b.count(t, `SELECT count(*) FROM webhook.deliveries WHERE event_id = 'big'`))
	require.Zero(t, b.count(t, `SELECT count(*) FROM webhook.chunks`), "the chunk went with its deliveries")
	again, err := f.record(context.Background(), jobs, nil, 0)
	require.NoError(t, err)
	require.Empty(t, again, "recorded once")
}

// TestFirstGate: attempts come before the record only for a first
// delivery of a recent event above the sequence taken before the last
// reconnect, and not for a while after a record failed.
func TestFirstGate(t *testing.T) {
	g := &firstGate{cfg: FirstAttemptConfig{}.withDefaults()}
	now := time.Now()
	require.True(t, g.attemptFirst(1, 1, now, 1))
	require.False(t, g.attemptFirst(1, 2, now, 1), "redelivered")
	require.True(t, g.attemptFirst(1, 1, now, DefaultShareAbove), "a fan-out not shared")
	require.False(t, g.attemptFirst(1, 1, now, DefaultShareAbove+1), "a large fan-out")
	require.False(t, g.attemptFirst(1, 1, now.Add(-2*time.Minute), 1), "older than MaxAge")
	g.taken(10)
	g.taken(7)
	g.reconnected()
	require.False(t, g.attemptFirst(10, 1, now, 1), "taken before NATS reconnected")
	require.True(t, g.attemptFirst(11, 1, now, 1))
	g.failed()
	require.False(t, g.attemptFirst(12, 1, now, 1), "recording just failed")
	g.trouble.Store(time.Now().Add(-troubleHold - time.Second).UnixNano())
	require.True(t, g.attemptFirst(12, 1, now, 1))
	g.cfg.Wait = -1
	require.False(t, g.attemptFirst(13, 1, now, 1), "turned off")
}

// TestFirstSinkRoutesByDelivery: an outcome the fan-out waits for goes to
// its event's collector, once; one of a job it let go, one nobody waits
// for and one that comes after the record committed go to the log.
func TestFirstSinkRoutesByDelivery(t *testing.T) {
	t.Parallel()
	var logged []string
	s := newFirstSink(func(o delivery.Outcome) { logged = append(logged, o.Job.DeliveryID) })
	w := newFirstAttempts()
	a, b, c := delivery.Job{DeliveryID: "a"}, delivery.Job{DeliveryID: "b"}, delivery.Job{DeliveryID: "c"}
	w.attempting([]delivery.Job{a, b, c})
	s.expect(w, []delivery.Job{a, b, c})
	s.forget([]delivery.Job{c})
	w.dropped([]delivery.Job{c})
	s.Report(delivery.Outcome{Job: a})
	s.Report(delivery.Outcome{Job: c})
	s.Report(delivery.Outcome{Job: delivery.Job{DeliveryID: "other"}})
	done, _ := w.wait(FirstAttemptConfig{Wait: time.Millisecond, Max: time.Second}, nil, nil)
	require.Len(t, done, 1)
	require.Equal(t, "a", done[0].Job.DeliveryID)
	w.recorded(func(o delivery.Outcome) { t.Fatalf("nothing finished while recording: %v", o.Job.DeliveryID) })
	s.Report(delivery.Outcome{Job: b}) // after the record: logged like any later attempt
	s.Report(delivery.Outcome{Job: a}) // a second outcome of a: the collector took its one
	require.Equal(t, []string{"c", "other", "b", "a"}, logged)
}
