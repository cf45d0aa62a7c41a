package webhooker

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/attempt"
	"github.com/eventline/eventline/internal/webhooker/delivery"
)

// TestLeases: the leases of one replica against Postgres alone. A renewal
// moves the end of every claim it holds and of nothing else: not a due
// row another replica took, not a retry an outcome scheduled; a claims
// row is renewed while any of its deliveries is held and ended once none
// is; giving back ends everything at once.
func TestLeases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Pool(t)
	clk := &clock{t: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}
	t0 := clk.Now()
	l := newLeases(delivery.NewLedger(pool, delivery.DisableRule{}, 0), 10*time.Second, clk.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))

	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := pool.Exec(ctx, sql, args...)
		require.NoError(t, err)
	}
	dueAt := func(id string) time.Time {
		t.Helper()
		var at time.Time
		require.NoError(t, pool.QueryRow(ctx, `SELECT due_at FROM webhook.due WHERE delivery_id = $1`, id).Scan(&at))
		return at.UTC()
	}
	claimedUntil := func(row int64) time.Time {
		t.Helper()
		var at time.Time
		require.NoError(t, pool.QueryRow(ctx, `SELECT claimed_until FROM webhook.claims WHERE id = $1`, row).Scan(&at))
		return at.UTC()
	}
	claimsRow := func(ids ...string) int64 {
		t.Helper()
		var row int64
		require.NoError(t, pool.QueryRow(ctx, `INSERT INTO webhook.claims (tenant, claimed_until, delivery_ids) VALUES ('acme', $1, $2) RETURNING id`,
			t0.Add(10*time.Second), ids).Scan(&row))
		return row
	}

	exec(`INSERT INTO webhook.due (delivery_id, tenant, due_at, claimed_by) VALUES ('d1', 'acme', $1, $2), ('d2', 'acme', $1, $2), ('d3', 'acme', $1, 'other')`,
		t0.Add(10*time.Second), l.owner)
	l.holdDue(dueFirst("d1", "d2", "d3"), t0.Add(10*time.Second))
	r1, r2 := claimsRow("c1", "c2"), claimsRow("c3")
	l.holdRecorded([]delivery.Job{{DeliveryID: "c1", Claim: r1, Attempt: 1}, {DeliveryID: "c2", Claim: r1, Attempt: 1}, {DeliveryID: "c3", Claim: r2, Attempt: 1},
		{DeliveryID: "unclaimed", Attempt: 1}}, t0.Add(10*time.Second))
	require.Equal(t, 6, l.len(), "a job without a claims row is not held")

	clk.Add(5 * time.Second)
	require.NoError(t, l.renew(ctx))
	require.Equal(t, t0.Add(15*time.Second), dueAt("d1"))
	require.Equal(t, t0.Add(15*time.Second), dueAt("d2"))
	require.Equal(t, t0.Add(10*time.Second), dueAt("d3"), "taken by another replica: not ours to renew")
	require.Equal(t, t0.Add(15*time.Second), claimedUntil(r1))
	require.Equal(t, t0.Add(15*time.Second), claimedUntil(r2))
	require.True(t, l.usable("d3"), "half its claim left")
	require.True(t, l.usable("unclaimed"), "nothing claimed: an attempt before the record")

	// An outcome schedules d2's retry (and clears its claim) just before
	// this replica lets it go: a renewal in between leaves the retry alone.
	exec(`UPDATE webhook.due SET due_at = $1, claimed_by = NULL WHERE delivery_id = 'd2'`, t0.Add(time.Hour))
	l.release("c1", 1)
	clk.Add(time.Second)
	require.NoError(t, l.renew(ctx))
	require.Equal(t, t0.Add(time.Hour), dueAt("d2"))
	require.Equal(t, t0.Add(16*time.Second), claimedUntil(r1), "c2 is still held")
	require.True(t, l.usable("d1"))
	require.True(t, l.usable("c2"))
	require.False(t, l.usable("d3"), "another replica's row was not renewed: its claim ends in 4 s here, less than half a claim")

	// The scheduler claims c3 again after its claim ended: still held, not
	// fresh, and held through its due row from now on.
	require.Equal(t, []string{"d4"}, l.holdDue(dueFirst("c3", "d4"), clk.Now().Add(10*time.Second)))
	l.release("d4", 1)
	for _, id := range []string{"c2", "d2", "d3", "never-held"} {
		l.release(id, 1)
	}
	clk.Add(time.Second)
	require.NoError(t, l.renew(ctx))
	require.Equal(t, t0.Add(7*time.Second), claimedUntil(r1), "nothing of it held: ended now, so what was let go is due at once")
	require.Equal(t, t0.Add(7*time.Second), claimedUntil(r2), "c3 is held through its due row now")
	require.Equal(t, t0.Add(17*time.Second), dueAt("d1"))

	clk.Add(time.Second)
	require.NoError(t, l.giveBack(ctx))
	require.Equal(t, t0.Add(8*time.Second), dueAt("d1"), "given back: due now")
	require.Zero(t, l.len())
	clk.Add(time.Second)
	require.NoError(t, l.renew(ctx))
	require.Equal(t, t0.Add(8*time.Second), dueAt("d1"), "nothing held: nothing renewed")
}

// dueFirst is the due claims of the first attempts of ids.
func dueFirst(ids ...string) []dueClaim {
	out := make([]dueClaim, len(ids))
	for i, id := range ids {
		out[i] = dueClaim{id: id, attempt: 1}
	}
	return out
}

// TestLeasesKeepANewAttemptFromALateRelease: a delivery whose outcome is
// written but not yet released is claimed again for its next attempt (a
// retry made by hand at that moment): the next attempt is fresh, and the
// late release of the first leaves it held.
func TestLeasesKeepANewAttemptFromALateRelease(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}
	l := newLeases(nil, 10*time.Second, clk.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	until := clk.Now().Add(10 * time.Second)
	l.holdDue(dueFirst("x"), until)
	require.Empty(t, l.holdDue(dueFirst("x"), until), "the same attempt, still running: not fresh")
	require.Equal(t, []string{"x"}, l.holdDue([]dueClaim{{id: "x", attempt: 2}}, until), "the next attempt is fresh")
	l.release("x", 1)
	require.Equal(t, 1, l.len(), "the first attempt's release leaves the second held")
	l.release("x", 2)
	require.Zero(t, l.len())
}

// TestClaimsRenewedWhileAttemptsRun: a delivery whose attempt outlasts its
// claim is not attempted a second time while its replica lives, whether
// it was recorded claimed (a first attempt) or claimed from webhook.due
// (a retry); once the outcome is written nothing of it stays claimed.
func TestClaimsRenewedWhileAttemptsRun(t *testing.T) {
	t.Parallel()
	const claim = 2 * time.Second
	// The test renews (outlast) and lets renewals fail by moving the
	// clock; the replica's own renewals, every quarter of the claim in
	// real time, would renew the claims it means to let end.
	b := setup(t, options{allowPrivate: true, timeout: time.Minute, cfg: Config{Claim: claim, RenewEvery: time.Hour}})
	held := newGate()
	started := make(chan int, 10)
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		started <- n
		switch n {
		case 1: // the first event's first attempt fails: its retry is due
			w.WriteHeader(http.StatusInternalServerError)
		default:
			held.wait()
		}
	})
	t.Cleanup(held.open) // registered last: runs before the receiver and the service stop
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"*"}})
	ctx := context.Background()

	// outlast makes time pass well beyond the claim, renewing as the
	// replica does every quarter of it, and runs the scheduler each time.
	outlast := func() {
		t.Helper()
		for range 6 {
			b.clock.Add(claim / 2)
			require.NoError(t, b.svc.heldLeases().renew(ctx))
			n, err := b.svc.ScheduleNow(ctx)
			require.NoError(t, err)
			require.Zero(t, n, "a held delivery was claimed again")
		}
	}

	b.publish(t, "retried")
	require.Equal(t, 1, <-started)
	b.waitStatusAttempts(t, id, 1)
	b.clock.Add(time.Hour)
	n, err := b.svc.ScheduleNow(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the retry")
	require.Equal(t, 2, <-started)
	outlast()

	b.publish(t, "first")
	require.Equal(t, 3, <-started)
	// Recorded claimed once the fan-out stops waiting for it (50 ms),
	// with a claim from the clock of that moment.
	require.Eventually(t, func() bool { return b.svc.heldLeases().len() == 2 }, 10*time.Second, time.Millisecond)
	outlast()
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM webhook.claims`), "the first attempt's claim, renewed")

	// Renewals fail for longer than the claim (Postgres unreachable): the
	// claims end and the scheduler claims both deliveries again, but this
	// replica still holds them and attempts neither a second time.
	b.clock.Add(3 * claim)
	n, err = b.svc.ScheduleNow(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n, "both ended claims, due and claimed again")
	select {
	case got := <-started:
		t.Fatalf("attempt %d: a delivery this replica holds was attempted again", got)
	case <-time.After(300 * time.Millisecond):
	}
	require.Equal(t, 2, b.svc.heldLeases().len())

	held.open()
	b.waitStatus(t, id, "succeeded", 2)
	require.Len(t, rc.all(), 3, "no attempt made twice")
	// Written: let go. The claims row is ended at the next renewal and
	// removed by the scheduler; no due row stays. The replica's own
	// renewal loop runs too, and may have taken the ended row, or the due
	// row of the claim taken again, just before the renewal here: its
	// UPDATE can land after this scheduler pass (and move that due row
	// past the clock), so let time pass, renew and schedule until both
	// are gone. The due row goes once due: its delivery is finished.
	require.Eventually(t, func() bool { return b.svc.heldLeases().len() == 0 }, 10*time.Second, 10*time.Millisecond)
	for deadline := time.Now().Add(10 * time.Second); ; {
		b.clock.Add(2 * claim)
		require.NoError(t, b.svc.heldLeases().renew(ctx))
		_, err = b.svc.ScheduleNow(ctx)
		require.NoError(t, err)
		if b.count(t, `SELECT (SELECT count(*) FROM webhook.claims) + (SELECT count(*) FROM webhook.due) + (SELECT count(*) FROM webhook.chunks)`) == 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "a claims or due row stayed after every outcome was written")
	}
	require.Len(t, rc.all(), 3, "no attempt made twice")
}

// heldLeases returns the leases Run made, under the lock Run sets them with.
func (s *Service) heldLeases() *leases {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leases
}

// TestLapsedClaimIsLetGo: a delivery waiting in the dispatcher whose
// claim ends unrenewed (its replica was starved: no renewal came through)
// is not attempted when its turn comes, since another replica may have
// taken it meanwhile: it is let go, and attempted once when claimed again.
func TestLapsedClaimIsLetGo(t *testing.T) {
	t.Parallel()
	// Renewals run every quarter of the claim: none comes in this test.
	const claim = 20 * time.Minute
	b := setup(t, options{allowPrivate: true, timeout: time.Minute, cfg: Config{Claim: claim, Dispatch: attempt.DispatchConfig{PerEndpoint: 1}}})
	held := newGate()
	started := make(chan int, 10)
	rc := newReceiver(t, func(n int, _ http.ResponseWriter, _ *http.Request) {
		started <- n
		if n == 1 {
			held.wait()
		}
	})
	t.Cleanup(held.open) // registered last: runs before the receiver and the service stop
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"*"}})
	ctx := context.Background()

	b.publish(t, "running")
	require.Equal(t, 1, <-started)
	b.publish(t, "queued") // behind the first: one attempt at a time to the endpoint
	require.Eventually(t, func() bool { return b.svc.heldLeases().len() == 2 }, 10*time.Second, time.Millisecond, "both recorded claimed")

	b.clock.Add(claim) // no renewal: both claims end
	held.open()
	// The running attempt finishes and is written; the queued delivery is
	// let go without an attempt.
	require.Eventually(t, func() bool { return b.svc.heldLeases().len() == 0 }, 10*time.Second, time.Millisecond)
	require.Equal(t, 1, len(rc.all()), "the delivery whose claim ended was attempted")

	require.NoError(t, b.svc.heldLeases().renew(ctx)) // ends the claims row it was listed in
	n, err := b.svc.ScheduleNow(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n, "claimed again once its claim ended")
	require.Equal(t, 2, <-started)
	b.waitStatus(t, id, "succeeded", 2)
	require.Equal(t, 2, len(rc.all()), "each delivery attempted once")
}

// gate holds whoever waits on it until it is opened; opening it again
// does nothing.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func newGate() *gate  { return &gate{ch: make(chan struct{})} }
func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }
func (g *gate) wait() { <-g.ch }
