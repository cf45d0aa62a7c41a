package delivery

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
	"github.com/eventline/eventline/pkg/events"
)

// The ledger against Postgres alone: no NATS, no HTTP, no running
// service.

// ledgerEnv is a ledger over a database of its own, with helpers that
// read the tables it writes.
type ledgerEnv struct {
	t    *testing.T
	ctx  context.Context
	pool *pgxpool.Pool
	l    *Ledger
	t0   time.Time
}

func newLedgerEnv(t *testing.T, rule DisableRule) *ledgerEnv {
	t.Helper()
	pool := testenv.Pool(t)
	return &ledgerEnv{t: t, ctx: context.Background(), pool: pool, l: NewLedger(pool, rule, 0),
		t0: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}
}

// job is a first attempt of event to endpoint, under a new delivery id.
func (e *ledgerEnv) job(event, endpoint string) Job {
	return Job{DeliveryID: NewID(), Tenant: "acme", EndpointID: endpoint, Attempt: 1,
		Event: events.Event{ID: event, Type: "card.closed", Tenant: "acme", Seq: 7}}
}

// delivery is a delivery row's status and attempts; attempts -1: no row.
func (e *ledgerEnv) delivery(id string) (Status, int) {
	e.t.Helper()
	var st Status
	n := -1
	err := e.pool.QueryRow(e.ctx, `SELECT status, attempts FROM webhook.deliveries WHERE id = $1`, id).Scan(&st, &n)
	if err != nil {
		require.ErrorContains(e.t, err, "no rows")
	}
	return st, n
}

// due is a due row's time and claimer; ok false: no row.
func (e *ledgerEnv) due(id string) (at time.Time, claimedBy string, ok bool) {
	e.t.Helper()
	var by *string
	err := e.pool.QueryRow(e.ctx, `SELECT due_at, claimed_by FROM webhook.due WHERE delivery_id = $1`, id).Scan(&at, &by)
	if err != nil {
		require.ErrorContains(e.t, err, "no rows")
		return time.Time{}, "", false
	}
	if by != nil {
		claimedBy = *by
	}
	return at.UTC(), claimedBy, true
}

func (e *ledgerEnv) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.pool.QueryRow(e.ctx, sql, args...).Scan(&n))
	return n
}

func (e *ledgerEnv) exec(sql string, args ...any) {
	e.t.Helper()
	_, err := e.pool.Exec(e.ctx, sql, args...)
	require.NoError(e.t, err)
}

// failed is a failed attempt n of j at at, retried after retryIn (0: no
// retry left).
func failed(j Job, n int, at time.Time, retryIn time.Duration) Outcome {
	return Outcome{Job: j, Attempt: Attempt{N: n, At: at, ErrorClass: "status", StatusCode: 500}, Retry: retryIn > 0, RetryIn: retryIn, FinishedAt: at}
}

// succeeded is a successful attempt n of j at at.
func succeeded(j Job, n int, at time.Time) Outcome {
	return Outcome{Job: j, Attempt: Attempt{N: n, At: at, StatusCode: 200}, Succeeded: true, FinishedAt: at}
}

// TestLedgerRecord: one delivery per (event, endpoint), a redelivery
// creates nothing; deliveries recorded claimed are listed by a claims row
// until the claim ends, shared ones are due at once for anyone, and one
// recorded with its outcome is logged with its attempt and, when it is
// retried, due at its retry.
func TestLedgerRecord(t *testing.T) {
	t.Parallel()
	e := newLedgerEnv(t, DisableRule{})
	now, until := e.t0, e.t0.Add(8*time.Second)

	claimed1, claimed2, shared := e.job("e1", "ep1"), e.job("e1", "ep2"), e.job("e2", "ep1")
	attempted := e.job("e3", "ep1")
	done := failed(attempted, 1, now.Add(-time.Second), time.Minute)
	created, a, err := e.l.Record(e.ctx, []Item{
		{Jobs: []Job{claimed1, claimed2, attempted}, Done: []Outcome{done}},
		{Jobs: []Job{shared}, Shared: true},
	}, now, until)
	require.NoError(t, err)
	require.Empty(t, a.Disabled)
	require.Len(t, created, 2)
	require.Len(t, created[0], 2, "the attempted delivery is not handed back")
	require.Equal(t, []string{claimed1.DeliveryID, claimed2.DeliveryID}, []string{created[0][0].DeliveryID, created[0][1].DeliveryID})
	require.NotZero(t, created[0][0].Claim)
	require.Equal(t, created[0][0].Claim, created[0][1].Claim, "one claims row per tenant and statement")
	require.Len(t, created[1], 1)
	require.Zero(t, created[1][0].Claim, "shared: claimed by no one")

	// Claimed: a claims row lists them until the claim ends; no due row.
	var ids []string
	var claimedUntil time.Time
	require.NoError(t, e.pool.QueryRow(e.ctx, `SELECT delivery_ids, claimed_until FROM webhook.claims WHERE id = $1`, created[0][0].Claim).Scan(&ids, &claimedUntil))
	sort.Strings(ids)
	want := []string{claimed1.DeliveryID, claimed2.DeliveryID}
	sort.Strings(want)
	require.Equal(t, want, ids)
	require.True(t, claimedUntil.Equal(until))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM webhook.claims`))
	_, _, ok := e.due(claimed1.DeliveryID)
	require.False(t, ok, "a claimed delivery has no due row")

	// Shared: due now, claimed by no replica.
	at, by, ok := e.due(shared.DeliveryID)
	require.True(t, ok)
	require.True(t, at.Equal(now))
	require.Empty(t, by)

	// Recorded with its outcome: logged, and due at its retry.
	st, n := e.delivery(attempted.DeliveryID)
	require.Equal(t, StatusPending, st)
	require.Equal(t, 1, n)
	at, _, ok = e.due(attempted.DeliveryID)
	require.True(t, ok)
	require.True(t, at.Equal(done.FinishedAt.Add(time.Minute)), "due at its retry: %s", at)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM webhook.attempts WHERE delivery_id = $1`, attempted.DeliveryID))

	// A redelivery of both events (new delivery ids) creates nothing.
	again, _, err := e.l.Record(e.ctx, []Item{{Jobs: []Job{e.job("e1", "ep1"), e.job("e1", "ep2"), e.job("e3", "ep1")}}, {Jobs: []Job{e.job("e2", "ep1")}, Shared: true}},
		now.Add(time.Second), until.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, [][]Job{nil, nil}, again)
	require.Equal(t, 4, e.count(`SELECT count(*) FROM webhook.deliveries`))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM webhook.claims`), "nothing created: no claims row")
	require.Equal(t, 2, e.count(`SELECT count(*) FROM webhook.due`))

	// A batch where one delivery exists and the others are new (a
	// redelivered event grouped with a new one) records the new ones and
	// their outcomes (a failure: in a transaction with the trackers): the
	// insert as new fails on the existing one, and the batch is recorded
	// again skipping it.
	fresh, freshAttempted := e.job("e4", "ep2"), e.job("e4", "ep1")
	freshDone := failed(freshAttempted, 1, now, time.Minute)
	mixed, _, err := e.l.Record(e.ctx, []Item{{Jobs: []Job{e.job("e1", "ep1")}}, {Jobs: []Job{fresh, freshAttempted}, Done: []Outcome{freshDone}}},
		now.Add(2*time.Second), until.Add(2*time.Second))
	require.NoError(t, err)
	require.Empty(t, mixed[0], "the existing delivery is skipped")
	require.Len(t, mixed[1], 1)
	require.Equal(t, fresh.DeliveryID, mixed[1][0].DeliveryID)
	require.Equal(t, 6, e.count(`SELECT count(*) FROM webhook.deliveries`))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM webhook.attempts WHERE delivery_id = $1`, freshAttempted.DeliveryID))
	_, _, ok = e.due(freshAttempted.DeliveryID)
	require.True(t, ok, "due at its retry")
}

// TestLedgerLogOutcomes: an outcome moves its delivery's status and
// attempts; a retry is due at its time and no longer claimed by anyone; a
// finished delivery taken from webhook.due leaves it; a late outcome of
// an earlier attempt changes nothing.
func TestLedgerLogOutcomes(t *testing.T) {
	t.Parallel()
	e := newLedgerEnv(t, DisableRule{})
	now := e.t0
	retried, finished, first := e.job("e1", "ep1"), e.job("e2", "ep1"), e.job("e3", "ep1")
	_, _, err := e.l.Record(e.ctx, []Item{{Jobs: []Job{retried, finished, first}}}, now, now.Add(8*time.Second))
	require.NoError(t, err)
	// retried and finished were taken from webhook.due by this replica.
	e.exec(`INSERT INTO webhook.due (delivery_id, tenant, due_at, claimed_by) VALUES ($1, 'acme', $3, 'me'), ($2, 'acme', $3, 'me')`,
		retried.DeliveryID, finished.DeliveryID, now.Add(8*time.Second))
	retried.Scheduled, finished.Scheduled = true, true

	_, err = e.l.Log(e.ctx, []Outcome{
		failed(retried, 2, now.Add(time.Second), time.Minute),
		succeeded(finished, 1, now.Add(time.Second)),
		succeeded(first, 1, now.Add(time.Second)),
	})
	require.NoError(t, err)

	st, n := e.delivery(retried.DeliveryID)
	require.Equal(t, StatusPending, st)
	require.Equal(t, 2, n)
	at, by, ok := e.due(retried.DeliveryID)
	require.True(t, ok)
	require.True(t, at.Equal(now.Add(time.Second+time.Minute)), "due at its retry: %s", at)
	require.Empty(t, by, "a retry is claimed by no one until a scheduler takes it")

	st, n = e.delivery(finished.DeliveryID)
	require.Equal(t, StatusSucceeded, st)
	require.Equal(t, 1, n)
	_, _, ok = e.due(finished.DeliveryID)
	require.False(t, ok, "a finished scheduled delivery leaves webhook.due")

	st, _ = e.delivery(first.DeliveryID)
	require.Equal(t, StatusSucceeded, st)
	require.Equal(t, 3, e.count(`SELECT count(*) FROM webhook.attempts`))

	// The outcome of attempt 1 of retried comes after that of attempt 2.
	_, err = e.l.Log(e.ctx, []Outcome{succeeded(retried, 1, now)})
	require.NoError(t, err)
	st, n = e.delivery(retried.DeliveryID)
	require.Equal(t, StatusPending, st, "a late outcome of an earlier attempt changes nothing")
	require.Equal(t, 2, n)
	_, _, ok = e.due(retried.DeliveryID)
	require.True(t, ok, "its retry is still due")
}

// TestLedgerClaimDue: a claim takes the due rows that are due, skips rows
// locked by another claim and rows not due yet, drops due rows whose
// delivery is finished, and first makes the unattempted deliveries of an
// ended claims row due.
func TestLedgerClaimDue(t *testing.T) {
	t.Parallel()
	e := newLedgerEnv(t, DisableRule{})
	now := e.t0
	ready, later, done, locked, lapsed := e.job("e1", "ep1"), e.job("e2", "ep1"), e.job("e3", "ep1"), e.job("e4", "ep1"), e.job("e5", "ep1")
	_, _, err := e.l.Record(e.ctx, []Item{{Jobs: []Job{ready, later, done, locked}, Shared: true}}, now.Add(-time.Second), now)
	require.NoError(t, err)
	// lapsed was recorded claimed by a replica whose claim ended.
	_, _, err = e.l.Record(e.ctx, []Item{{Jobs: []Job{lapsed}}}, now.Add(-time.Minute), now.Add(-time.Second))
	require.NoError(t, err)
	e.exec(`UPDATE webhook.due SET due_at = $2 WHERE delivery_id = $1`, later.DeliveryID, now.Add(time.Second))
	e.exec(`UPDATE webhook.deliveries SET status = 'succeeded' WHERE id = $1`, done.DeliveryID)

	// Another replica's claim holds locked's due row.
	tx, err := e.pool.Begin(e.ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(e.ctx) }()
	_, err = tx.Exec(e.ctx, `SELECT 1 FROM webhook.due WHERE delivery_id = $1 FOR UPDATE`, locked.DeliveryID)
	require.NoError(t, err)

	until := now.Add(8 * time.Second)
	got, _, err := e.l.ClaimDue(e.ctx, now, until, "me", 10, 0)
	require.NoError(t, err)
	var ids []string
	for _, d := range got {
		ids = append(ids, d.ID)
		require.Equal(t, "ep1", d.EndpointID)
		require.Equal(t, 0, d.Attempts)
		require.Empty(t, d.ClaimedBy)
	}
	require.ElementsMatch(t, []string{ready.DeliveryID, lapsed.DeliveryID}, ids)
	for _, id := range ids {
		at, by, ok := e.due(id)
		require.True(t, ok)
		require.True(t, at.Equal(until), "claimed until %s: %s", until, at)
		require.Equal(t, "me", by)
	}
	_, _, ok := e.due(done.DeliveryID)
	require.False(t, ok, "the due row of a finished delivery is dropped")
	at, by, _ := e.due(later.DeliveryID)
	require.True(t, at.Equal(now.Add(time.Second)), "not due yet: untouched")
	require.Empty(t, by)
	require.Zero(t, e.count(`SELECT count(*) FROM webhook.claims`), "the ended claims row went")

	// Once the other claim ends, its row is taken, naming its claimer.
	require.NoError(t, tx.Rollback(e.ctx))
	e.exec(`UPDATE webhook.due SET claimed_by = 'other' WHERE delivery_id = $1`, locked.DeliveryID)
	got, _, err = e.l.ClaimDue(e.ctx, now, until, "me", 10, 0)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, locked.DeliveryID, got[0].ID)
	require.Equal(t, "other", got[0].ClaimedBy, "the replica whose claim ended")

	// Busy (limit 0): nothing is claimed, but ended claims still expire.
	_, _, err = e.l.Record(e.ctx, []Item{{Jobs: []Job{e.job("e6", "ep1")}}}, now.Add(-time.Minute), now.Add(-time.Second))
	require.NoError(t, err)
	got, _, err = e.l.ClaimDue(e.ctx, now, until, "me", 0, 0)
	require.NoError(t, err)
	require.Empty(t, got)
	require.Zero(t, e.count(`SELECT count(*) FROM webhook.claims`))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM webhook.due WHERE claimed_by IS NULL AND due_at = $1`, now))
}

// TestLedgerClaimsFairlyBetweenTenants: a tenant's large backlog does not
// hold back other tenants' due deliveries: each tenant due gets a share of
// a claim, oldest first within the tenant, and the room a tenant leaves
// goes to the others; with more tenants due than room, claims rotate
// through them. (Ordered by due time alone, the first claim would be the
// big tenant's oldest 100.)
func TestLedgerClaimsFairlyBetweenTenants(t *testing.T) {
	t.Parallel()
	e := newLedgerEnv(t, DisableRule{})
	now := e.t0
	until := now.Add(8 * time.Second)
	// due records jobs of tenant, each due d before now plus a microsecond
	// per job, so that the first is the oldest.
	due := func(tenant string, n int, d time.Duration) []string {
		var jobs []Job
		for i := range n {
			j := e.job(fmt.Sprintf("%s-e%d", tenant, i), "ep-"+tenant)
			j.Tenant, j.Event.Tenant = tenant, tenant
			jobs = append(jobs, j)
		}
		_, _, err := e.l.Record(e.ctx, []Item{{Jobs: jobs, Shared: true}}, now.Add(-time.Minute), now)
		require.NoError(t, err)
		ids := make([]string, n)
		for i, j := range jobs {
			ids[i] = j.DeliveryID
			e.exec(`UPDATE webhook.due SET due_at = $2 WHERE delivery_id = $1`, j.DeliveryID, now.Add(-d+time.Duration(i)*time.Microsecond))
		}
		return ids
	}
	big := due("big", 300, 10*time.Second)
	mid := due("mid", 5, 5*time.Second)
	small := due("small", 1, time.Second)

	claim := func(limit int) (ids []string, byTenant map[string]int) {
		got, _, err := e.l.ClaimDue(e.ctx, now, until, "me", limit, 0)
		require.NoError(t, err)
		byTenant = map[string]int{}
		for _, d := range got {
			ids = append(ids, d.ID)
			byTenant[d.Tenant]++
		}
		return ids, byTenant
	}
	ids, byTenant := claim(100)
	require.Len(t, ids, 100, "the room is filled")
	require.Equal(t, map[string]int{"big": 94, "mid": 5, "small": 1}, byTenant)
	require.Subset(t, ids, append(append([]string{}, mid...), small...))
	require.Subset(t, ids, big[:94], "the big tenant's oldest")

	// One tenant due: it gets all the room.
	ids, byTenant = claim(100)
	require.Equal(t, map[string]int{"big": 100}, byTenant)
	require.ElementsMatch(t, big[94:194], ids)

	// More tenants due than room: each claim spreads over as many tenants
	// as it has room for, and the next claims serve the others.
	e.exec(`DELETE FROM webhook.due`)
	left := map[string]int{} // tenant -> deliveries not yet claimed
	var many []string
	for i := range 5 {
		tenant := fmt.Sprintf("t%d", i)
		many = append(many, due(tenant, 2, time.Second)...)
		left[tenant] = 2
	}
	seen := map[string]bool{}
	for round := 0; len(seen) < len(many); round++ {
		require.Less(t, round, 4, "claims of 3 take 10 deliveries in 4 rounds")
		tenantsDue := 0
		for _, n := range left {
			if n > 0 {
				tenantsDue++
			}
		}
		ids, byTenant := claim(3)
		require.Len(t, byTenant, min(3, tenantsDue), "round %d: %v", round, byTenant)
		for tenant, n := range byTenant {
			left[tenant] -= n
		}
		for _, id := range ids {
			require.False(t, seen[id], "claimed twice: %s", id)
			seen[id] = true
		}
	}
}

// TestLedgerDisablesAtThreshold: consecutive failures disable an endpoint
// once they reach the rule's count and span, not before; the disabled
// endpoint comes back as data, to announce.
func TestLedgerDisablesAtThreshold(t *testing.T) {
	t.Parallel()
	e := newLedgerEnv(t, DisableRule{Failures: 3, Span: time.Hour})
	store := endpoint.NewStore(e.pool, testenv.Keyring(t))
	ep, err := store.CreateEndpoint(e.ctx, endpoint.Endpoint{Tenant: "acme", URL: "https://a.example/hook", Events: []string{"*"}, Format: "json"}, "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	require.NoError(t, err)
	t0 := e.t0
	fail := func(n int, at time.Time) Outcome { return failed(e.job(fmt.Sprint("e", n), ep.ID), 1, at, time.Minute) }
	enabled := func() (bool, string) {
		var on bool
		var reason *string
		require.NoError(t, e.pool.QueryRow(e.ctx, `SELECT enabled, disabled_reason FROM webhook.endpoints WHERE id = $1`, ep.ID).Scan(&on, &reason))
		if reason == nil {
			return on, ""
		}
		return on, *reason
	}

	a, err := e.l.Log(e.ctx, []Outcome{fail(1, t0), fail(2, t0.Add(time.Minute)), fail(3, t0.Add(2*time.Minute))})
	require.NoError(t, err)
	require.Empty(t, a.Disabled, "three failures within two minutes: short of the span")
	on, _ := enabled()
	require.True(t, on)

	a, err = e.l.Log(e.ctx, []Outcome{fail(4, t0.Add(time.Hour))})
	require.NoError(t, err)
	reason := "4 consecutive failed attempts since 2026-12-05T12:00:00Z"
	require.Equal(t, []DisabledEndpoint{{Tenant: "acme", ID: ep.ID, Reason: reason}}, a.Disabled)
	on, got := enabled()
	require.False(t, on)
	require.Equal(t, reason, got)

	a, err = e.l.Log(e.ctx, []Outcome{fail(5, t0.Add(2*time.Hour))})
	require.NoError(t, err)
	require.Empty(t, a.Disabled, "disabled already: not again")
}

// TestDisableRuleVerdict: the rule alone, on trackers as Ledger.track
// reads them.
func TestDisableRuleVerdict(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	rule := DisableRule{Failures: 3, Span: time.Hour}
	for _, tc := range []struct {
		name  string
		state trackerState
		want  disableVerdict
	}{
		{"healthy", trackerState{enabled: true, at: t0}, disableVerdict{}},
		{"short of the count", trackerState{enabled: true, failures: 2, since: &t0, at: t0.Add(2 * time.Hour)}, disableVerdict{}},
		{"short of the span", trackerState{enabled: true, failures: 30, since: &t0, at: t0.Add(time.Hour - time.Second)}, disableVerdict{}},
		{"at the threshold", trackerState{enabled: true, failures: 3, since: &t0, at: t0.Add(time.Hour)},
			disableVerdict{disable: true, reason: "3 consecutive failed attempts since 2026-12-05T12:00:00Z"}},
		{"gone", trackerState{enabled: true, gone: true, at: t0}, disableVerdict{disable: true, reason: "the endpoint answered 410 Gone"}},
		{"gone beats the count", trackerState{enabled: true, gone: true, failures: 3, since: &t0, at: t0.Add(time.Hour)},
			disableVerdict{disable: true, reason: "the endpoint answered 410 Gone"}},
		{"disabled already", trackerState{gone: true, failures: 3, since: &t0, at: t0.Add(time.Hour)}, disableVerdict{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, rule.verdict(tc.state))
		})
	}
	require.Equal(t, DisableRule{Failures: 20, Span: 24 * time.Hour}, DisableRule{}.withDefaults())
}

// TestRecoveredAfterAnUnmarkedStreak: a success that ends a streak which
// reached WEBHOOK_FAILING_AFTER before the announcer remembered it as
// announced (its attempt_failing still queued) still announces the end;
// a streak that never reached it announces nothing.
func TestRecoveredAfterAnUnmarkedStreak(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Pool(t)
	store := endpoint.NewStore(pool, testenv.Keyring(t))
	ep, err := store.CreateEndpoint(ctx, endpoint.Endpoint{Tenant: "acme", URL: "https://a.example/hook", Events: []string{"*"}, Format: "json"}, "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	require.NoError(t, err)
	lg := NewLedger(pool, DisableRule{}, 0)
	at := time.Now().UTC().Truncate(time.Microsecond)
	out := func(n int, ok bool) Outcome {
		o := Outcome{Job: Job{DeliveryID: fmt.Sprint("d", n), Tenant: "acme", EndpointID: ep.ID, Event: events.Event{ID: fmt.Sprint("e", n), Type: "card.closed"}},
			Attempt: Attempt{N: 1, At: at.Add(time.Duration(n) * time.Second)}, Succeeded: ok, Retry: !ok, FinishedAt: at.Add(time.Duration(n) * time.Second)}
		if !ok {
			o.Attempt.ErrorClass = "timeout"
		}
		return o
	}
	track := func(batch ...Outcome) []Notice {
		var a Announcements
		require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var err error
			a, err = lg.track(ctx, tx, batch)
			return err
		}))
		return a.Notices
	}
	typesOf := func(ns []Notice) []string {
		var out []string
		for _, n := range ns {
			out = append(out, n.Type)
		}
		return out
	}
	require.Empty(t, track(out(1, false), out(2, false)))
	require.Empty(t, track(out(3, true)), "two failures are no streak to end")
	ns := track(out(4, false), out(5, false), out(6, false))
	require.Equal(t, []string{TypeAttemptFailing}, typesOf(ns))
	require.True(t, ns[0].Since.Equal(at.Add(4*time.Second)))
	// No announcer ran: the streak is not remembered as announced, and a
	// success ends it.
	ns = track(out(7, true))
	require.Equal(t, []string{TypeRecovered}, typesOf(ns))
	require.True(t, ns[0].Since.Equal(at.Add(4*time.Second)), "recovered names the streak it ends")
	// Another streak: announced (the end of the one before was never
	// appended, and is not announced again); a success and a new streak
	// in one batch announce its end, then the new streak.
	ns = track(out(8, false), out(9, false), out(10, false))
	require.Equal(t, []string{TypeAttemptFailing}, typesOf(ns))
	ns = track(out(11, true), out(12, false), out(13, false), out(14, false))
	require.Equal(t, []string{TypeRecovered, TypeAttemptFailing}, typesOf(ns))
	require.True(t, ns[0].Since.Equal(at.Add(8*time.Second)), "the end of the latest streak: %s", ns[0].Since)
	require.True(t, ns[1].Since.Equal(at.Add(12*time.Second)))
}
