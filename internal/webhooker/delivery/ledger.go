package delivery

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/pkg/events"
)

// Ledger is the only code that writes the webhook delivery tables:
// webhook.deliveries, webhook.attempts, webhook.due, webhook.claims,
// webhook.chunks (chunks.go), and the failure tracker of webhook.endpoints (consecutive_failures,
// failing_since, failing_announced, and enabled when the tracker disables
// an endpoint). The parts that decide when to write — the fan-out's group
// commit, the result writer's batches, the scheduler's ticks, the leases'
// renewals, the API — call its methods, each one statement, one pipeline
// of statements in an implicit transaction, or one transaction whose
// BEGIN goes with its first statement (inTxWith), and act on what it returns: the jobs it created, the rows
// it claimed or renewed, and the announcements of committed outcomes
// (disabled endpoints, operational events), which it never sends itself.
//
// It keeps the tracker's settings: how many consecutive failures make a
// failing streak, and the rule that disables an endpoint (DisableRule).
type Ledger struct {
	pool    *pgxpool.Pool
	disable DisableRule
	// failingAfter consecutive failed attempts make a failing streak,
	// announced with the other operational events (docs/webhooks.md
	// "Operational events").
	failingAfter int
	// turn rotates which tenants a claim serves first (claimPlan).
	turn *atomic.Uint64
}

// NewLedger returns the ledger over pool; a zero rule takes the
// DisableRule defaults, failingAfter <= 0 DefaultFailingAfter.
func NewLedger(pool *pgxpool.Pool, rule DisableRule, failingAfter int) *Ledger {
	if failingAfter <= 0 {
		failingAfter = DefaultFailingAfter
	}
	return &Ledger{pool: pool, disable: rule.withDefaults(), failingAfter: failingAfter, turn: new(atomic.Uint64)}
}

// On is the same ledger writing through pool (the leases' renewals have a
// connection of their own, docs/architecture.md §16).
func (l *Ledger) On(pool *pgxpool.Pool) *Ledger {
	c := *l
	c.pool = pool
	return &c
}

// Item is the deliveries of one event to record: jobs, one per
// matching endpoint, and the outcomes of the first attempts already made
// (attempt first: the fan-out, package webhooker).
type Item struct {
	Jobs []Job
	Done []Outcome
	// Shared: the jobs without an outcome are recorded due now for any
	// replica to claim (a replay of dead letters), not claimed by this one.
	Shared bool
	// Chunk is the webhook.chunks row the jobs come from (0: none): it is
	// deleted in the same statement, so a chunk is done exactly when its
	// deliveries are recorded.
	Chunk int64
}

// The record statement records deliveries ($1-$10), claims for this
// replica those created unattempted ($11, their claim's end), makes the
// due rows of retries and shared fan-outs, logs the attempts made first
// ($12-$21) and clears the failure trackers of the endpoints that
// succeeded ($22, $23: failingAfter), and deletes the chunks the
// deliveries come from ($24). It returns each created delivery
// with its claim row (0: none), then the endpoints whose announced streak
// a success ended (tenant in the third column). It has two forms, built
// once: recordSQL skips the deliveries that exist already, recordNewSQL
// inserts every one and fails as a whole on one that exists (Record).
var recordNewSQL, recordSQL = recordStatement(""), recordStatement("ON CONFLICT (endpoint_id, event_id) DO NOTHING")

func recordStatement(onConflict string) string {
	return `WITH d AS (
			INSERT INTO webhook.deliveries (id, tenant, endpoint_id, event_id, event_seq, event_type, status, attempts, next_attempt_at, last_attempt_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::int[], $9::timestamptz[], $10::timestamptz[])
			` + onConflict + `
			RETURNING id, tenant, status, attempts, next_attempt_at
		), c AS (
			INSERT INTO webhook.claims (tenant, claimed_until, delivery_ids)
			SELECT tenant, $11, array_agg(id) FROM d WHERE attempts = 0 AND next_attempt_at = $11 GROUP BY tenant
			RETURNING id, tenant
		), r AS (
			-- retries of attempted deliveries, and shared ones (due before $11)
			INSERT INTO webhook.due (delivery_id, tenant, due_at) SELECT id, tenant, next_attempt_at FROM d
			WHERE status = 'pending' AND (attempts > 0 OR next_attempt_at <> $11)
		), a AS (
			INSERT INTO webhook.attempts (delivery_id, n, tenant, endpoint_id, at, duration_ms, status_code, error_class, error, response)
			SELECT o.* FROM unnest($12::text[], $13::int[], $14::text[], $15::text[], $16::timestamptz[], $17::int[], $18::int[], $19::text[], $20::text[], $21::text[])
				AS o(id, n, tenant, endpoint_id, at, duration_ms, status_code, error_class, error, response)
			WHERE o.id IN (SELECT id FROM d)
		), h AS (
			-- the ended streak is kept to announce its end (endedStreak)
			` + resetTrackers("$22", "$23") + `
		), k AS (
			DELETE FROM webhook.chunks WHERE id = ANY($24::bigint[])
		)
		SELECT d.id, coalesce(c.id, 0), NULL::text, NULL::timestamptz FROM d LEFT JOIN c ON c.tenant = d.tenant AND d.attempts = 0 AND d.next_attempt_at = $11
		UNION ALL SELECT id, 0, tenant, failing_announced FROM h WHERE failing_announced IS NOT NULL`
}

// Record records one delivery per job of a batch of events in one
// statement, skipping those that exist (a redelivered event). A job with
// an outcome in done is written finished, or pending with its retry due
// (webhook.due), with its attempt logged; a job without one is claimed
// for this replica until claimUntil: one webhook.claims row per tenant
// lists them, and the scheduler makes those still without an attempt due
// once the claim ends (the replica died, or let them go: leases). The
// jobs of a shared item are instead due at now, claimed by no one, for
// any replica's scheduler. Outcomes also move their endpoints' failure
// trackers (track) in the same transaction.
//
// It returns, per item, the jobs it created without an outcome, each
// claimed one naming its webhook.claims row (Job.Claim), and what the
// committed outcomes announce, for the caller to act on.
func (l *Ledger) Record(ctx context.Context, items []Item, now, claimUntil time.Time) ([][]Job, Announcements, error) {
	var nDone, nJobs int
	for _, it := range items {
		nDone, nJobs = nDone+len(it.Done), nJobs+len(it.Jobs)
	}
	// Sized once: an Outcome carries its Job and event, and growing these
	// by appending copied each many times over.
	done := make([]Outcome, 0, nDone)
	outcomes := make(map[string]int, nDone) // delivery id -> index in done
	strs := func() []string { return make([]string, 0, nJobs) }
	ids, eps, tenants, eventIDs, types, status := strs(), strs(), strs(), strs(), strs(), strs()
	seqs, attempts := make([]int64, 0, nJobs), make([]int32, 0, nJobs)
	next, last := make([]*time.Time, 0, nJobs), make([]*time.Time, 0, nJobs)
	for _, it := range items {
		for _, o := range it.Done {
			outcomes[o.Job.DeliveryID] = len(done)
			done = append(done, o)
		}
	}
	attempted := newAttemptRows(done)
	for _, it := range items {
		unattempted := &claimUntil
		if it.Shared {
			unattempted = &now
		}
		for _, j := range it.Jobs {
			ids, eps, tenants, eventIDs, types = append(ids, j.DeliveryID), append(eps, j.EndpointID), append(tenants, j.Tenant), append(eventIDs, j.Event.ID), append(types, j.Event.Type)
			seqs = append(seqs, int64(j.Event.Seq))
			if k, ok := outcomes[j.DeliveryID]; ok {
				status, attempts = append(status, attempted.status[k]), append(attempts, attempted.n[k])
				next, last = append(next, attempted.next[k]), append(last, &attempted.at[k])
				continue
			}
			status, attempts, next, last = append(status, string(StatusPending)), append(attempts, 0), append(next, unattempted), append(last, nil)
		}
	}
	out := make([][]Job, len(items))
	var chunks []int64
	for _, it := range items {
		if it.Chunk != 0 {
			chunks = append(chunks, it.Chunk)
		}
	}
	if len(ids) == 0 && len(chunks) == 0 {
		return out, Announcements{}, nil
	}
	// Only successes (the usual case): their endpoints' failure trackers
	// are cleared inside the statement, and one statement needs no
	// transaction. A failure needs the tracker logic (track).
	// Operational events' deliveries move no tracker (trackedOutcomes).
	healthy, allSucceeded := succeededEndpoints(trackedOutcomes(done))
	var created map[string]int64 // delivery id -> its webhook.claims row (0: not claimed)
	var disabled Announcements
	recordArgs := []any{ids, tenants, eps, eventIDs, seqs, types, status, attempts, next, last, claimUntil,
		attempted.ids, attempted.n, attempted.tenants, attempted.endpoints, attempted.at, attempted.dur, attempted.code, attempted.class, attempted.errs, attempted.resp,
		healthy, l.failingAfter, chunks}
	// read reads what the statement returned.
	read := func(rows pgx.Rows) error {
		created, disabled = make(map[string]int64, len(ids)), Announcements{}
		var id string
		var claim int64
		var recoveredTenant *string
		var announced *time.Time
		if _, err := pgx.ForEachRow(rows, []any{&id, &claim, &recoveredTenant, &announced}, func() error {
			if recoveredTenant != nil && announced != nil { // a row of h: an announced streak ended
				disabled.Notices = append(disabled.Notices, recovered(*recoveredTenant, id, *announced))
			} else {
				created[id] = claim
			}
			return nil
		}); err != nil {
			return fmt.Errorf("insert deliveries: %w", err)
		}
		return nil
	}
	run := func(sql string) (err error) {
		if allSucceeded {
			// One statement: no transaction needed.
			var rows pgx.Rows
			if rows, err = l.pool.Query(ctx, sql, recordArgs...); err != nil {
				return fmt.Errorf("insert deliveries: %w", err)
			}
			return read(rows)
		}
		// BEGIN goes with the statement, and the trackers follow in the
		// same transaction.
		return inTxWith(ctx, l.pool, "insert deliveries", sql, recordArgs, read, func(tx pgx.Tx) error {
			var logged []Outcome
			for _, o := range done {
				if _, ok := created[o.Job.DeliveryID]; ok {
					logged = append(logged, o)
				}
			}
			if len(logged) == 0 {
				return nil
			}
			var err error
			disabled, err = l.track(ctx, tx, logged)
			return err
		})
	}
	// An event's deliveries exist already only when it is delivered
	// again (a crash, a lost ack) or a record is tried again, so a batch
	// is inserted as new: that costs Postgres about a tenth less than an
	// insert that first looks for each row (ON CONFLICT's speculative
	// insertion; BENCHMARKS.md, Webhooker). A batch that meets an
	// existing delivery fails as a whole, writing nothing, and is
	// recorded again skipping the existing ones.
	err := run(recordNewSQL)
	if deliveryExists(err) {
		err = run(recordSQL)
	}
	if err != nil {
		return nil, Announcements{}, err
	}
	for i, it := range items {
		for _, j := range it.Jobs {
			claim, ok := created[j.DeliveryID]
			if _, attempted := outcomes[j.DeliveryID]; !attempted && ok {
				j.Claim = claim
				out[i] = append(out[i], j)
			}
		}
	}
	return out, disabled, nil
}

// deliveryExists tells whether err is recordNewSQL meeting a delivery
// that exists: the same endpoint and event, or the same delivery id (a
// record tried again after its answer was lost, which may have
// committed).
func deliveryExists(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" &&
		(pgErr.ConstraintName == "deliveries_endpoint_id_event_id_key" || pgErr.ConstraintName == "deliveries_pkey")
}

// inTxWith runs sql with args as the first statement of a transaction,
// sent with its BEGIN in one round trip (pgx.Batch.BeginTx), hands its
// rows to read (which reads them all), then runs rest (nil: nothing) in
// the transaction and commits it; any error rolls it back. what names
// the statement in the errors of sending it and of the commit.
func inTxWith(ctx context.Context, pool *pgxpool.Pool, what, sql string, args []any, read func(pgx.Rows) error, rest func(pgx.Tx) error) error {
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	b.Queue(sql, args...)
	br := pool.SendBatch(ctx, b)
	tx := br.Tx()
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // no-op after Commit
	_, err := br.Exec()                                            // BEGIN
	if err == nil {
		var rows pgx.Rows
		if rows, err = br.Query(); err != nil {
			err = fmt.Errorf("%s: %w", what, err)
		} else {
			err = read(rows)
		}
	} else {
		err = fmt.Errorf("%s: %w", what, err)
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%s: %w", what, cerr)
	}
	if err != nil {
		return err
	}
	if rest != nil {
		if err := rest(tx); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("%s: commit: %w", what, err)
	}
	return nil
}

// attemptRows is a batch of outcomes as the column arrays of the
// statements that log them (unnest).
type attemptRows struct {
	ids, status, tenants, endpoints []string
	class, errs, resp               []*string
	n, dur                          []int32
	code                            []*int32
	at                              []time.Time
	next                            []*time.Time // a retry's time; nil when finished
	scheduled                       []bool
}

func newAttemptRows(batch []Outcome) attemptRows {
	n := len(batch)
	r := attemptRows{ids: make([]string, n), status: make([]string, n), tenants: make([]string, n), endpoints: make([]string, n),
		class: make([]*string, n), errs: make([]*string, n), resp: make([]*string, n), n: make([]int32, n), dur: make([]int32, n),
		code: make([]*int32, n), at: make([]time.Time, n), next: make([]*time.Time, n), scheduled: make([]bool, n)}
	for i, o := range batch {
		a := o.Attempt
		r.ids[i], r.tenants[i], r.endpoints[i], r.n[i], r.at[i], r.dur[i] = o.Job.DeliveryID, o.Job.Tenant, o.Job.EndpointID, int32(a.N), a.At, int32(a.DurationMS)
		r.scheduled[i] = o.Job.Scheduled
		if a.StatusCode != 0 {
			c := int32(a.StatusCode)
			r.code[i] = &c
		}
		r.class[i], r.errs[i], r.resp[i] = nilIfBlank(a.ErrorClass), nilIfBlank(a.Error), nilIfBlank(a.Response)
		st := o.Status()
		r.status[i] = string(st)
		if st == StatusPending {
			next := o.FinishedAt.Add(o.RetryIn)
			r.next[i] = &next
		}
	}
	return r
}

func nilIfBlank(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// logSQL logs a batch of attempts (the columns of attemptRows, $1-$13),
// moves their deliveries (a HOT update: no index of webhook.deliveries
// names these columns), and keeps webhook.due in step — a retry is due at
// its time; a finished delivery taken from webhook.due leaves it. The
// attempts guard makes a late outcome of an earlier attempt change
// nothing.
const logSQL = `WITH o AS (
		SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::timestamptz[], $6::int[], $7::int[], $8::text[], $9::text[], $10::text[],
			$11::text[], $12::timestamptz[], $13::bool[])
			AS o(id, n, tenant, endpoint_id, at, duration_ms, status_code, error_class, error, response, status, next, scheduled)
	), a AS (
		INSERT INTO webhook.attempts (delivery_id, n, tenant, endpoint_id, at, duration_ms, status_code, error_class, error, response)
		SELECT id, n, tenant, endpoint_id, at, duration_ms, status_code, error_class, error, response FROM o
		ON CONFLICT DO NOTHING
	), u AS (
		UPDATE webhook.deliveries d SET status = o.status, attempts = o.n, next_attempt_at = o.next, last_attempt_at = o.at
		FROM o WHERE d.id = o.id AND d.attempts < o.n
		RETURNING d.id, d.tenant, o.status, o.next, o.scheduled
	), r AS (
		INSERT INTO webhook.due (delivery_id, tenant, due_at) SELECT id, tenant, next FROM u WHERE status = 'pending'
		ON CONFLICT (delivery_id) DO UPDATE SET due_at = excluded.due_at, claimed_by = NULL
	)
	DELETE FROM webhook.due x USING u WHERE x.delivery_id = u.id AND u.status <> 'pending' AND u.scheduled`

// Log logs a batch of outcomes of recorded deliveries in one
// transaction and moves their endpoints' failure trackers (track). It
// returns what the committed batch announces, for the caller to act on.
//
// A batch of successes only (the usual case) is one round trip: the log
// statement and the one that clears its endpoints' trackers (track does
// no more for successes) pipelined in one implicit transaction. Any other
// sends BEGIN with the log statement, then the trackers, then COMMIT.
func (l *Ledger) Log(ctx context.Context, batch []Outcome) (Announcements, error) {
	r := newAttemptRows(batch)
	args := []any{r.ids, r.n, r.tenants, r.endpoints, r.at, r.dur, r.code, r.class, r.errs, r.resp, r.status, r.next, r.scheduled}
	if healthy, ok := succeededEndpoints(trackedOutcomes(batch)); ok {
		return l.logSucceeded(ctx, args, healthy)
	}
	var disabled Announcements
	read := func(rows pgx.Rows) error {
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("log attempts: %w", err)
		}
		return nil
	}
	err := inTxWith(ctx, l.pool, "log attempts", logSQL, args, read, func(tx pgx.Tx) error {
		var err error
		disabled, err = l.track(ctx, tx, batch)
		return err
	})
	if err != nil {
		return Announcements{}, err
	}
	return disabled, nil
}

// logSucceeded logs a batch of successes and clears the failure trackers
// of healthy, their endpoints, in one round trip: both statements in one
// implicit transaction, which commits or fails as a whole.
func (l *Ledger) logSucceeded(ctx context.Context, args []any, healthy []string) (Announcements, error) {
	var out Announcements
	b := &pgx.Batch{}
	b.Queue(logSQL, args...)
	if len(healthy) > 0 {
		// A success ends the streak; one that was announced, or reached
		// failingAfter (its announcement may still be queued), is kept in
		// failing_announced until its end is announced (recovered).
		b.Queue(resetTrackers("$1", "$2"), healthy, l.failingAfter)
	}
	br := l.pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return Announcements{}, fmt.Errorf("log attempts: %w", err)
	}
	if len(healthy) > 0 {
		rows, err := br.Query()
		if err == nil {
			err = readRecovered(rows, &out)
		}
		if err != nil {
			return Announcements{}, fmt.Errorf("reset endpoint failures: %w", err)
		}
	}
	if err := br.Close(); err != nil {
		return Announcements{}, fmt.Errorf("log attempts: %w", err)
	}
	return out, nil
}

// succeededEndpoints returns the endpoints of batch when every outcome in
// it is a success, whose failure trackers are then simply cleared; ok is
// false when one is not (track).
func succeededEndpoints(batch []Outcome) (ids []string, ok bool) {
	seen := map[string]bool{}
	for _, o := range batch {
		if !o.Succeeded {
			return nil, false
		}
		if !seen[o.Job.EndpointID] {
			seen[o.Job.EndpointID] = true
			ids = append(ids, o.Job.EndpointID)
		}
	}
	return ids, true
}

type DisabledEndpoint struct{ Tenant, ID, Reason string }

// Announcements are what a batch of outcomes announces once it is
// committed: the endpoints it disabled, and the other operational events.
// The ledger returns them; the caller acts on them (the result writer, package webhooker).
type Announcements struct {
	Disabled []DisabledEndpoint
	Notices  []Notice
}

// endedStreak is what webhook.endpoints.failing_announced becomes when a
// success ends the endpoint's streak (failingAfter names the statement's
// parameter holding it, "$2"): the streak ending if it reached
// failingAfter — announced, or its attempt_failing still queued, so a
// success right after it still announces its end — else the streak
// remembered before (its end not announced yet). The SET expression reads
// the row as it was before the update.
func endedStreak(failingAfter string) string {
	return `CASE WHEN consecutive_failures >= ` + failingAfter + ` AND failing_since IS NOT NULL THEN failing_since ELSE failing_announced END`
}

// readRecovered reads the endpoints resetTrackers reset, (tenant, id,
// failing_announced), and adds a recovery notice to out for each whose
// failing streak was announced.
func readRecovered(rows pgx.Rows, out *Announcements) error {
	var tenant, id string
	var announced *time.Time
	_, err := pgx.ForEachRow(rows, []any{&tenant, &id, &announced}, func() error {
		if announced != nil {
			out.Notices = append(out.Notices, recovered(tenant, id, *announced))
		}
		return nil
	})
	return err
}

// resetTrackers is the statement that clears the failure trackers of the
// endpoints whose ids are in the parameter ids, touching only rows that
// have something to clear, and returns the tenant, id and
// failing_announced of each: a success ends the streak, and one that was
// announced, or reached failingAfter (the parameter holding it; its
// announcement may still be queued), is kept in failing_announced until
// its end is announced (endedStreak). record runs it as a CTE next to its
// inserts, track on its own.
func resetTrackers(ids, failingAfter string) string {
	return `UPDATE webhook.endpoints SET consecutive_failures = 0, failing_since = NULL,
			failing_announced = ` + endedStreak(failingAfter) + `
		WHERE id = ANY(` + ids + `) AND (consecutive_failures <> 0 OR failing_since IS NOT NULL OR failing_announced IS NOT NULL)
		RETURNING tenant, id, failing_announced`
}

// recovered is the notice of an endpoint's announced failing streak,
// started at since, ended by a success.
func recovered(tenant, endpointID string, since time.Time) Notice {
	return Notice{Type: TypeRecovered, Tenant: tenant, EndpointID: endpointID, Since: since}
}

type endpointTally struct {
	tenant        string
	reset         bool      // a success in this batch
	failuresAfter int       // failures after the last success (or all)
	firstFailure  time.Time // first of those
	gone          bool
	lastClass     string // of the latest failure
}

// track moves the failure trackers of the batch's endpoints in tx: a
// success clears them, failures add up, and an endpoint that answered 410
// or meets the disable rule (DisableRule.verdict) is disabled. It returns
// the endpoints it disabled and the operational events of the batch, to
// announce once tx commits: a failing streak that reached failingAfter
// and was not announced yet, the end of one that was, and each delivery
// that ran out of retries. Outcomes of operational events' deliveries are
// left out (trackedOutcomes).
func (l *Ledger) track(ctx context.Context, tx pgx.Tx, batch []Outcome) (Announcements, error) {
	var out Announcements
	if batch = trackedOutcomes(batch); len(batch) == 0 {
		return out, nil
	}
	tallies := map[string]*endpointTally{}
	for _, o := range batch {
		t := tallies[o.Job.EndpointID]
		if t == nil {
			t = &endpointTally{tenant: o.Job.Tenant}
			tallies[o.Job.EndpointID] = t
		}
		if o.Succeeded {
			t.reset, t.failuresAfter, t.firstFailure = true, 0, time.Time{}
		} else {
			if t.failuresAfter == 0 {
				t.firstFailure = o.Attempt.At
			}
			t.failuresAfter++
			t.lastClass = o.Attempt.ErrorClass
		}
		t.gone = t.gone || o.Gone
	}
	// Endpoints that only succeeded: one statement, touching only rows
	// that have failures to clear (normally none).
	var healthy []string
	for id, t := range tallies {
		if t.reset && t.failuresAfter == 0 && !t.gone {
			healthy = append(healthy, id)
			delete(tallies, id)
		}
	}
	if len(healthy) > 0 {
		// A success ends the streak; one that was announced, or reached
		// failingAfter (its announcement may still be queued), is kept in
		// failing_announced until its end is announced (recovered).
		rows, err := tx.Query(ctx, resetTrackers("$1", "$2"), healthy, l.failingAfter)
		if err == nil {
			err = readRecovered(rows, &out)
		}
		if err != nil {
			return out, fmt.Errorf("reset endpoint failures: %w", err)
		}
	}
	for id, t := range tallies {
		var failures int
		var since, announced *time.Time
		var enabled bool
		err := tx.QueryRow(ctx, `UPDATE webhook.endpoints SET
				consecutive_failures = CASE WHEN $3 THEN $4 ELSE consecutive_failures + $4 END,
				failing_since = CASE WHEN $4 = 0 THEN NULL WHEN $3 OR failing_since IS NULL THEN $5 ELSE failing_since END,
				failing_announced = CASE WHEN $3 THEN `+endedStreak("$6")+` ELSE failing_announced END
			WHERE tenant = $1 AND id = $2
			RETURNING consecutive_failures, failing_since, enabled, failing_announced`,
			t.tenant, id, t.reset, t.failuresAfter, t.firstFailure, l.failingAfter).Scan(&failures, &since, &enabled, &announced)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("track endpoint failures: %w", err)
		}
		// A success in the batch ended the announced streak (a streak
		// after it has a later first failure).
		if t.reset && announced != nil && (since == nil || !since.Equal(*announced)) {
			out.Notices = append(out.Notices, recovered(t.tenant, id, *announced))
		}
		if enabled && since != nil && failures >= l.failingAfter && (announced == nil || !announced.Equal(*since)) {
			out.Notices = append(out.Notices, Notice{Type: TypeAttemptFailing, Tenant: t.tenant, EndpointID: id, Since: *since, Failures: failures,
				LastErrorClass: t.lastClass})
		}
		v := l.disable.verdict(trackerState{enabled: enabled, gone: t.gone, failures: failures, since: since, at: batch[len(batch)-1].FinishedAt})
		if v.disable {
			if _, err := tx.Exec(ctx, `UPDATE webhook.endpoints SET enabled = false, disabled_reason = $3, updated_at = now(),
					change_seq = nextval('webhook.endpoint_changes') WHERE tenant = $1 AND id = $2`, t.tenant, id, v.reason); err != nil {
				return out, fmt.Errorf("disable endpoint: %w", err)
			}
			out.Disabled = append(out.Disabled, DisabledEndpoint{t.tenant, id, v.reason})
		}
	}
	for _, o := range batch {
		if o.exhausted() {
			out.Notices = append(out.Notices, Notice{Type: TypeAttemptExhausted, Tenant: o.Job.Tenant, EndpointID: o.Job.EndpointID,
				DeliveryID: o.Job.DeliveryID, EventID: o.Job.Event.ID, EventType: o.Job.Event.Type, Attempts: o.Attempt.N, LastErrorClass: o.Attempt.ErrorClass})
		}
	}
	return out, nil
}

// MarkFailingAnnounced remembers that the endpoint's failing streak
// started at since was announced (its webhook.attempt_failing appended),
// only while that streak goes on: one that ended since stays unannounced,
// and its end is then not announced either.
func (l *Ledger) MarkFailingAnnounced(ctx context.Context, endpointID string, since time.Time) error {
	_, err := l.pool.Exec(ctx, `UPDATE webhook.endpoints SET failing_announced = $2 WHERE id = $1 AND failing_since = $2`, endpointID, since)
	return err
}

// MarkRecoveryAnnounced forgets the endpoint's announced failing streak
// started at since once its end (webhook.recovered) was appended.
func (l *Ledger) MarkRecoveryAnnounced(ctx context.Context, endpointID string, since time.Time) error {
	_, err := l.pool.Exec(ctx, `UPDATE webhook.endpoints SET failing_announced = NULL WHERE id = $1 AND failing_announced = $2`, endpointID, since)
	return err
}

// Due is a delivery the scheduler claimed from webhook.due.
type Due struct {
	ID, Tenant, EndpointID string
	Seq                    int64
	Attempts               int
	ClaimedBy              string // the replica whose claim ended; "" when none
}

// ClaimDue claims for owner, until until, at most limit deliveries due at
// now, with FOR UPDATE SKIP LOCKED so replicas never take the same one,
// and returns them, shared between tenants (claimPlan); and at most
// chunks chunks of shared fan-outs (claimChunksSQL). First it turns
// expired claims into due rows (expireClaims), also when limit is 0 (busy:
// the others take what is due), lists the tenants with deliveries due and
// claims the chunks: these statements in one round trip, an implicit
// transaction of their own, so a pass that finds nothing due — every pass
// of an idle replica, four a second — costs one round trip, not four
// (BEGIN, the statements, COMMIT). Only when some tenant has deliveries
// due does it open the transaction that claims them; due rows whose
// delivery is no longer pending (finished meanwhile, or pruned) are
// dropped there, not returned. The chunks it claimed are returned also
// when that transaction fails: they are claimed.
func (l *Ledger) ClaimDue(ctx context.Context, now, until time.Time, owner string, limit, chunks int) ([]Due, []Chunk, error) {
	tenants, taken, err := expireAndFindDue(ctx, l.pool, now, limit > 0, claimChunks{n: chunks, until: until, owner: owner})
	if err != nil {
		return nil, nil, fmt.Errorf("claim due deliveries: %w", err)
	}
	if len(tenants) == 0 {
		return nil, taken, nil
	}
	var live []Due
	plan := planClaim(tenants, limit, l.turn.Add(1))
	var claimed []Due
	sql, args := plan.first(now)
	read := func(rows pgx.Rows) error {
		var err error
		claimed, err = pgx.CollectRows(rows, scanDue)
		return err
	}
	// BEGIN goes with the first claim statement.
	err = inTxWith(ctx, l.pool, "claim due deliveries", sql, args, read, func(tx pgx.Tx) error {
		var err error
		if claimed, err = plan.rest(ctx, tx, claimed, now); err != nil || len(claimed) == 0 {
			return err
		}
		var liveIDs, stale []string
		for _, d := range claimed {
			if d.Attempts < 0 {
				stale = append(stale, d.ID)
			} else {
				liveIDs = append(liveIDs, d.ID)
				live = append(live, d)
			}
		}
		if len(stale) > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM webhook.due WHERE delivery_id = ANY($1)`, stale); err != nil {
				return fmt.Errorf("drop finished due rows: %w", err)
			}
		}
		_, err = tx.Exec(ctx, `UPDATE webhook.due SET due_at = $2, claimed_by = $3 WHERE delivery_id = ANY($1)`, liveIDs, until, owner)
		return err
	})
	if err != nil {
		return nil, taken, fmt.Errorf("claim due deliveries: %w", err)
	}
	return live, taken, nil
}

// claimChunks asks expireAndFindDue to claim at most n chunks for owner
// until until.
type claimChunks struct {
	n     int
	until time.Time
	owner string
}

// expireAndFindDue turns expired claims into due rows (expireClaims),
// with find lists the tenants with deliveries due at now (dueTenantsSQL),
// and claims the chunks c asks for (claimChunksSQL), pipelined in one
// round trip. The list only says which tenants to claim from: the claim
// locks what is still due, SKIP LOCKED, in a transaction of its own.
func expireAndFindDue(ctx context.Context, pool *pgxpool.Pool, now time.Time, find bool, c claimChunks) ([]string, []Chunk, error) {
	b := &pgx.Batch{}
	b.Queue(expireClaimsSQL, now)
	if find {
		b.Queue(dueTenantsSQL, now)
	}
	if c.n > 0 {
		b.Queue(claimChunksSQL, now, c.until, c.owner, c.n)
	}
	br := pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, nil, fmt.Errorf("expire claims: %w", err)
	}
	var tenants []string
	if find {
		rows, err := br.Query()
		if err != nil {
			return nil, nil, err
		}
		if tenants, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return nil, nil, err
		}
	}
	var chunks []Chunk
	if c.n > 0 {
		rows, err := br.Query()
		if err != nil {
			return nil, nil, fmt.Errorf("claim chunks: %w", err)
		}
		if chunks, err = pgx.CollectRows(rows, scanChunk); err != nil {
			return nil, nil, fmt.Errorf("claim chunks: %w", err)
		}
	}
	// The pipeline is one implicit transaction: its chunks are claimed
	// only once it commits.
	if err := br.Close(); err != nil {
		return nil, nil, err
	}
	return tenants, chunks, nil
}

// dueTenantsSQL lists the tenants with deliveries due at $1: a skip scan
// of due_tenant_at_idx, one index probe per tenant with any due row.
const dueTenantsSQL = `WITH RECURSIVE t(tenant) AS (
		(SELECT tenant FROM webhook.due ORDER BY tenant LIMIT 1)
		UNION ALL
		SELECT (SELECT d.tenant FROM webhook.due d WHERE d.tenant > t.tenant ORDER BY d.tenant LIMIT 1) FROM t WHERE t.tenant IS NOT NULL)
	SELECT tenant FROM t WHERE tenant IS NOT NULL AND EXISTS (SELECT 1 FROM webhook.due d WHERE d.tenant = t.tenant AND d.due_at <= $1)`

// claimedColumns are what claimPlan reads of a due row (u) it locked and
// of its delivery (d) while that is pending; attempts -1: the delivery is
// no longer pending.
const claimedColumns = `u.delivery_id, u.tenant, coalesce(d.endpoint_id, ''), coalesce(d.event_seq, 0), coalesce(d.attempts, -1), coalesce(u.claimed_by, '')`

func scanDue(r pgx.CollectableRow) (Due, error) {
	var d Due
	err := r.Scan(&d.ID, &d.Tenant, &d.EndpointID, &d.Seq, &d.Attempts, &d.ClaimedBy)
	return d, err
}

// claimPlan locks at most limit due rows of tenants (those with
// deliveries due, dueTenantsSQL), oldest first within each tenant and
// shared between tenants (docs/webhooks.md "Fairness between tenants"):
// with several tenants due, each gets an equal share of limit (tenants
// beyond limit wait for a later turn, turn rotating which come first),
// and the room a tenant leaves goes to the tenants that have more, in
// turn. So a tenant's 100,000-delivery fan-out does not hold back another
// tenant's retry until it has drained, and one tenant alone gets all the
// room. Each statement locks exactly the rows it returns. Its first
// statement (first) is sent with the transaction's BEGIN; rest claims
// the room the first left, in the transaction.
type claimPlan struct {
	tenants []string
	limit   int
	share   int // each tenant's share; 0: one tenant, which gets all
}

func planClaim(tenants []string, limit int, turn uint64) claimPlan {
	if len(tenants) == 1 {
		return claimPlan{tenants: tenants, limit: limit}
	}
	k := int(turn % uint64(len(tenants)))
	tenants = append(tenants[k:], tenants[:k]...)
	if len(tenants) > limit {
		tenants = tenants[:limit]
	}
	return claimPlan{tenants: tenants, limit: limit, share: limit / len(tenants)}
}

// first is the plan's first statement: one tenant's rows, or each
// tenant's share.
func (p claimPlan) first(now time.Time) (string, []any) {
	if p.share == 0 {
		return claimTenantSQL, []any{p.tenants[0], now, p.limit, []string{}}
	}
	return `SELECT ` + claimedColumns + ` FROM unnest($1::text[]) AS t(tenant)
		CROSS JOIN LATERAL (SELECT u.delivery_id, u.tenant, u.claimed_by FROM webhook.due u
			WHERE u.tenant = t.tenant AND u.due_at <= $2 ORDER BY u.due_at LIMIT $3 FOR UPDATE SKIP LOCKED) u
		LEFT JOIN webhook.deliveries d ON d.id = u.delivery_id AND d.status = 'pending'`, []any{p.tenants, now, p.share}
}

// rest claims, in tx, the room the first statement left (got is what it
// claimed) from the tenants that filled their share, in turn, and
// returns everything claimed.
func (p claimPlan) rest(ctx context.Context, tx pgx.Tx, got []Due, now time.Time) ([]Due, error) {
	if p.share == 0 {
		return got, nil
	}
	taken := map[string][]string{}
	for _, d := range got {
		taken[d.Tenant] = append(taken[d.Tenant], d.ID)
	}
	for _, t := range p.tenants {
		if len(got) >= p.limit {
			break
		}
		if len(taken[t]) < p.share {
			continue // it had no more
		}
		more, err := claimTenant(ctx, tx, t, now, p.limit-len(got), taken[t])
		if err != nil {
			return nil, err
		}
		got = append(got, more...)
	}
	return got, nil
}

// claimTenantSQL locks at most $3 of tenant $1's rows due at $2, oldest
// first, but those of $4 (rows the transaction has locked already).
const claimTenantSQL = `SELECT ` + claimedColumns + ` FROM (SELECT u.delivery_id, u.tenant, u.claimed_by FROM webhook.due u
		WHERE u.tenant = $1 AND u.due_at <= $2 AND u.delivery_id <> ALL($4) ORDER BY u.due_at LIMIT $3 FOR UPDATE SKIP LOCKED) u
	LEFT JOIN webhook.deliveries d ON d.id = u.delivery_id AND d.status = 'pending'`

// claimTenant locks, in tx, at most n of tenant's due rows, oldest first,
// but those of except (rows tx has locked already).
func claimTenant(ctx context.Context, tx pgx.Tx, tenant string, now time.Time, n int, except []string) ([]Due, error) {
	if except == nil {
		except = []string{}
	}
	rows, err := tx.Query(ctx, claimTenantSQL, tenant, now, n, except)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanDue)
}

// expireClaimsSQL turns expired first-attempt claims (webhook.claims rows
// ended by $1) into due rows for the deliveries that still have no
// attempt, at most 100 claims rows a statement.
const expireClaimsSQL = `WITH expired AS (
		DELETE FROM webhook.claims WHERE id IN (
			SELECT id FROM webhook.claims WHERE claimed_until <= $1 ORDER BY claimed_until LIMIT 100 FOR UPDATE SKIP LOCKED)
		RETURNING delivery_ids
	)
	INSERT INTO webhook.due (delivery_id, tenant, due_at)
	SELECT d.id, d.tenant, $1 FROM expired, unnest(expired.delivery_ids) AS x(id) JOIN webhook.deliveries d ON d.id = x.id
	WHERE d.status = 'pending' AND d.attempts = 0
	ON CONFLICT (delivery_id) DO NOTHING`

// Renewal is one renewal of a replica's claims (the leases, package webhooker).
type Renewal struct {
	Due   []string // deliveries held through their webhook.due row
	Rows  []int64  // webhook.claims rows with deliveries still held
	Ended []int64  // webhook.claims rows with nothing held any more: ended at now
	// Chunks are the webhook.chunks rows being worked on: they renew while
	// they still name Owner; given back, they are due at Until and keep
	// naming it, so the next replica records them first.
	Chunks []int64
	Now    time.Time
	Until  time.Time // the new end of the claims of due and rows
	Owner  string    // this replica, in webhook.due.claimed_by
	// GiveBack clears the due rows' claimer (given back, not lapsed).
	GiveBack bool
}

// Renewed is what Postgres confirmed renewed: the due rows it found still
// claimed by the owner, and the claims rows.
type Renewed struct {
	Due  []string
	Rows map[int64]bool
}

// Renew moves the end of the claims in r to r.Until and ends r.Ended, in
// one statement. A due row renews only while it still names r.Owner: an
// outcome that scheduled a retry cleared it, and another replica that took
// it after the claim ended named itself.
func (l *Ledger) Renew(ctx context.Context, r Renewal) (Renewed, error) {
	var claimer *string
	if !r.GiveBack {
		claimer = &r.Owner
	}
	// A renewal waits for no lock (SKIP LOCKED): a row locked by another
	// transaction is being written by this replica's outcome writer (its
	// outcome is in, it needs no renewal) or claimed by a scheduler after
	// the claim ended (too late to renew). Waiting instead deadlocked
	// with outcome writes that lock the same due rows in another order,
	// and failed renewals let claims lapse (docs/architecture.md §16).
	res, err := l.pool.Query(ctx, `WITH d AS (
			UPDATE webhook.due SET due_at = $3, claimed_by = $7 WHERE delivery_id IN (
				SELECT delivery_id FROM webhook.due WHERE delivery_id = ANY($1) AND claimed_by = $4 FOR UPDATE SKIP LOCKED)
			RETURNING delivery_id
		), c AS (
			UPDATE webhook.claims SET claimed_until = $3 WHERE id IN (SELECT id FROM webhook.claims WHERE id = ANY($2) FOR UPDATE SKIP LOCKED)
			RETURNING id
		), e AS (
			UPDATE webhook.claims SET claimed_until = $5 WHERE id IN (SELECT id FROM webhook.claims WHERE id = ANY($6) FOR UPDATE SKIP LOCKED)
		), k AS (
			UPDATE webhook.chunks SET due_at = $3 WHERE id IN (SELECT id FROM webhook.chunks WHERE id = ANY($8) AND claimed_by = $4 FOR UPDATE SKIP LOCKED)
		)
		SELECT delivery_id, 0::bigint FROM d UNION ALL SELECT '', id FROM c`,
		r.Due, r.Rows, r.Until, r.Owner, r.Now, r.Ended, claimer, r.Chunks)
	out := Renewed{Rows: map[int64]bool{}}
	if err == nil {
		var id string
		var row int64
		_, err = pgx.ForEachRow(res, []any{&id, &row}, func() error {
			if row == 0 {
				out.Due = append(out.Due, id)
			} else {
				out.Rows[row] = true
			}
			return nil
		})
	}
	if err != nil {
		return Renewed{}, fmt.Errorf("renew claims: %w", err)
	}
	return out, nil
}

// Retry makes a delivery pending and due now, whatever its state; it
// keeps its webhook-id (the event id). It runs as the tenant.
func (l *Ledger) Retry(ctx context.Context, tenant, id string, now time.Time) error {
	return postgres.TenantTx(ctx, l.pool, tenant, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `WITH d AS (
				UPDATE webhook.deliveries SET status = 'pending', next_attempt_at = $3 WHERE tenant = $1 AND id = $2 RETURNING id, tenant
			)
			INSERT INTO webhook.due (delivery_id, tenant, due_at) SELECT id, tenant, $3 FROM d
			ON CONFLICT (delivery_id) DO UPDATE SET due_at = excluded.due_at`, tenant, id, now)
		if err != nil {
			return fmt.Errorf("retry delivery: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// Resend makes deliveries of the events to the tenant's endpoint due now: new ones
// are created, existing ones are sent again. It returns how many. It runs
// as the endpoint's tenant.
func (l *Ledger) Resend(ctx context.Context, tenant, endpointID string, evs []events.Event, now time.Time) (n int, err error) {
	if len(evs) == 0 {
		return 0, nil
	}
	ids, eventIDs, types := make([]string, len(evs)), make([]string, len(evs)), make([]string, len(evs))
	seqs := make([]int64, len(evs))
	for i, e := range evs {
		ids[i] = NewID()
		eventIDs[i], types[i], seqs[i] = e.ID, e.Type, int64(e.Seq)
	}
	err = postgres.TenantTx(ctx, l.pool, tenant, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `WITH d AS (
				INSERT INTO webhook.deliveries (id, tenant, endpoint_id, event_id, event_seq, event_type, next_attempt_at)
				SELECT d.id, $5, $6, d.event_id, d.seq, d.type, $7 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS d(id, event_id, seq, type)
				ON CONFLICT (endpoint_id, event_id) DO UPDATE SET status = 'pending', next_attempt_at = excluded.next_attempt_at
				RETURNING id, tenant
			)
			INSERT INTO webhook.due (delivery_id, tenant, due_at) SELECT id, tenant, $7 FROM d
			ON CONFLICT (delivery_id) DO UPDATE SET due_at = excluded.due_at`,
			ids, eventIDs, seqs, types, tenant, endpointID, now)
		if err != nil {
			return fmt.Errorf("schedule replay: %w", err)
		}
		n = int(tag.RowsAffected())
		return nil
	})
	return n, err
}

// Prune deletes the attempts and finished deliveries created before
// cutoff, in batches, and returns how many deliveries went.
func (l *Ledger) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	// Ids are UUIDv7: every delivery created before cutoff has an id below
	// the first id of cutoff's millisecond.
	n, err := postgres.DeleteInBatches(ctx, l.pool, 5000, `WITH old AS (
			SELECT id FROM webhook.deliveries WHERE id < $1 AND created_at < $2 AND status <> 'pending' ORDER BY id LIMIT 5000
		), gone AS (
			DELETE FROM webhook.attempts a USING old WHERE a.delivery_id = old.id
		)
		DELETE FROM webhook.deliveries d USING old WHERE d.id = old.id`, uuidV7Floor(cutoff), cutoff)
	if err != nil {
		return n, fmt.Errorf("prune deliveries: %w", err)
	}
	return n, nil
}

// uuidV7Floor is the smallest UUIDv7 of t's millisecond, as text.
func uuidV7Floor(t time.Time) string {
	ms := uint64(t.UnixMilli())
	return fmt.Sprintf("%08x-%04x-7000-8000-000000000000", ms>>16, ms&0xffff)
}
