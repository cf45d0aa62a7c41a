package webhooker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/postgres"
)

// outcome is the result of one attempt, to be logged.
type outcome struct {
	job        job
	attempt    Attempt
	succeeded  bool
	gone       bool          // 410: disable the endpoint
	retryIn    time.Duration // when !succeeded and retry: wait before the next attempt
	retry      bool
	finishedAt time.Time
}

// resultWriter logs attempts and moves deliveries and endpoint failure
// trackers in batches: one transaction per few milliseconds of outcomes,
// not one per attempt.
type resultWriter struct {
	pool      *pgxpool.Pool
	in        chan outcome
	log       *slog.Logger
	disable   DisableRule
	onDisable func(ctx context.Context, tenant, endpointID, reason string)
	leases    *leases // let go once written (or given up on)
	done      chan struct{}
	// failingAfter consecutive failed attempts make a failing streak,
	// announced through notify with the other operational events
	// (docs/webhooks.md "Operational events"); nil notify: none.
	failingAfter int
	notify       func(notice)
}

// DisableRule disables an endpoint that keeps failing: at least Failures
// consecutive failed attempts spanning at least Span. Default 20 and 24h.
type DisableRule struct {
	Failures int
	Span     time.Duration
}

func newResultWriter(pool *pgxpool.Pool, rule DisableRule, held *leases, log *slog.Logger, onDisable func(context.Context, string, string, string)) *resultWriter {
	if rule.Failures <= 0 {
		rule.Failures = 20
	}
	if rule.Span <= 0 {
		rule.Span = 24 * time.Hour
	}
	return &resultWriter{pool: pool, in: make(chan outcome, 8192), log: log, disable: rule, onDisable: onDisable, leases: held, done: make(chan struct{}),
		failingAfter: DefaultFailingAfter}
}

// outcomeLinger is how long a small batch of outcomes waits for more.
const outcomeLinger = 2 * time.Millisecond

// run writes batches until in is closed and drained.
func (w *resultWriter) run() {
	defer close(w.done)
	batch := make([]outcome, 0, 1000)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for o := range w.in {
		batch = append(batch[:0], o)
		// Take what is queued; while outcomes keep coming, wait up to
		// outcomeLinger for more: each transaction has a fixed cost (a
		// commit, the endpoint statement), and an outcome written a few
		// milliseconds later delays nothing but the log.
		linger.Reset(outcomeLinger)
	fill:
		for len(batch) < cap(batch) {
			select {
			case o, ok := <-w.in:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				if len(batch) >= cap(batch)/4 {
					break fill
				}
				select {
				case o, ok := <-w.in:
					if !ok {
						break fill
					}
					batch = append(batch, o)
				case <-linger.C:
					break fill
				}
			}
		}
		linger.Stop()
		for attempt := 0; ; {
			err := w.write(context.Background(), batch)
			if err == nil {
				break
			}
			w.log.Error("write delivery outcomes", "outcomes", len(batch), "error", err)
			// A transaction that lost to a concurrent one (a deadlock) is
			// written again however often it takes: giving up would have
			// these deliveries attempted a second time with no fault.
			if !postgres.Conflict(err) {
				if attempt++; attempt > 5 {
					// Let go: the claims end and the deliveries are attempted again.
					break
				}
			}
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
		}
		for _, o := range batch {
			w.leases.release(o.job.deliveryID)
		}
	}
}

type endpointTally struct {
	tenant        string
	reset         bool      // a success in this batch
	failuresAfter int       // failures after the last success (or all)
	firstFailure  time.Time // first of those
	gone          bool
	lastClass     string // of the latest failure
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

func newAttemptRows(batch []outcome) attemptRows {
	n := len(batch)
	r := attemptRows{ids: make([]string, n), status: make([]string, n), tenants: make([]string, n), endpoints: make([]string, n),
		class: make([]*string, n), errs: make([]*string, n), resp: make([]*string, n), n: make([]int32, n), dur: make([]int32, n),
		code: make([]*int32, n), at: make([]time.Time, n), next: make([]*time.Time, n), scheduled: make([]bool, n)}
	for i, o := range batch {
		a := o.attempt
		r.ids[i], r.tenants[i], r.endpoints[i], r.n[i], r.at[i], r.dur[i] = o.job.deliveryID, o.job.tenant, o.job.endpointID, int32(a.N), a.At, int32(a.DurationMS)
		r.scheduled[i] = o.job.scheduled
		if a.StatusCode != 0 {
			c := int32(a.StatusCode)
			r.code[i] = &c
		}
		r.class[i], r.errs[i], r.resp[i] = nilIfBlank(a.ErrorClass), nilIfBlank(a.Error), nilIfBlank(a.Response)
		st := o.status()
		r.status[i] = string(st)
		if st == StatusPending {
			next := o.finishedAt.Add(o.retryIn)
			r.next[i] = &next
		}
	}
	return r
}

// Status is where a delivery stands (docs/contract.md §2 "Webhooks").
type Status string

const (
	StatusPending   Status = "pending"   // its next attempt is due, claimed or running
	StatusSucceeded Status = "succeeded" // an attempt got a 2xx
	StatusFailed    Status = "failed"    // out of retries (or its endpoint is gone); retryable by hand
)

// status is the delivery's status after the outcome.
func (o outcome) status() Status {
	switch {
	case o.succeeded:
		return StatusSucceeded
	case o.retry:
		return StatusPending
	}
	return StatusFailed
}

func (w *resultWriter) write(ctx context.Context, batch []outcome) error {
	r := newAttemptRows(batch)
	var disabled announcements
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		// One statement: log the attempts, move the deliveries (a HOT
		// update: no index of webhook.deliveries names these columns), and
		// keep webhook.due in step — a retry is due at its time; a finished
		// delivery taken from webhook.due leaves it. The attempts guard
		// makes a late outcome of an earlier attempt change nothing.
		_, err := tx.Exec(ctx, `WITH o AS (
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
			DELETE FROM webhook.due x USING u WHERE x.delivery_id = u.id AND u.status <> 'pending' AND u.scheduled`,
			r.ids, r.n, r.tenants, r.endpoints, r.at, r.dur, r.code, r.class, r.errs, r.resp, r.status, r.next, r.scheduled)
		if err != nil {
			return fmt.Errorf("log attempts: %w", err)
		}
		disabled, err = w.trackEndpoints(ctx, tx, batch)
		return err
	})
	if err != nil {
		return err
	}
	w.announce(ctx, disabled)
	return nil
}

// succeededEndpoints returns the endpoints of batch when every outcome in
// it is a success, whose failure trackers are then simply cleared; ok is
// false when one is not (trackEndpoints).
func succeededEndpoints(batch []outcome) (ids []string, ok bool) {
	seen := map[string]bool{}
	for _, o := range batch {
		if !o.succeeded {
			return nil, false
		}
		if !seen[o.job.endpointID] {
			seen[o.job.endpointID] = true
			ids = append(ids, o.job.endpointID)
		}
	}
	return ids, true
}

type disabledEndpoint struct{ tenant, id, reason string }

// announcements are what a batch of outcomes announces once it is
// committed: the endpoints it disabled, and the other operational events.
type announcements struct {
	disabled []disabledEndpoint
	notices  []notice
}

// announce reports what a committed batch disabled, and queues its
// operational events (never before the outcomes are durably written). A
// nil w (inserts without a result writer, in tests) announces nothing.
func (w *resultWriter) announce(ctx context.Context, a announcements) {
	if w == nil {
		return
	}
	for _, d := range a.disabled {
		w.onDisable(ctx, d.tenant, d.id, d.reason)
	}
	if w.notify != nil {
		for _, n := range a.notices {
			w.notify(n)
		}
	}
}

// streakLength is failingAfter; DefaultFailingAfter for a nil w (inserts
// without a result writer, in tests).
func (w *resultWriter) streakLength() int {
	if w == nil {
		return DefaultFailingAfter
	}
	return w.failingAfter
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

// recovered is the notice of an endpoint's announced failing streak,
// started at since, ended by a success.
func recovered(tenant, endpointID string, since time.Time) notice {
	return notice{typ: TypeRecovered, tenant: tenant, endpointID: endpointID, since: since}
}

// trackEndpoints moves the failure trackers of the batch's endpoints in
// tx: a success clears them, failures add up, and an endpoint that
// answered 410 or meets the disable rule is disabled. It returns the
// endpoints it disabled and the operational events of the batch, to
// announce once tx commits: a failing streak that reached failingAfter and
// was not announced yet, the end of one that was, and each delivery that
// ran out of retries. Outcomes of operational events' deliveries are left
// out (trackedOutcomes).
func (w *resultWriter) trackEndpoints(ctx context.Context, tx pgx.Tx, batch []outcome) (announcements, error) {
	var out announcements
	if batch = trackedOutcomes(batch); len(batch) == 0 {
		return out, nil
	}
	tallies := map[string]*endpointTally{}
	for _, o := range batch {
		t := tallies[o.job.endpointID]
		if t == nil {
			t = &endpointTally{tenant: o.job.tenant}
			tallies[o.job.endpointID] = t
		}
		if o.succeeded {
			t.reset, t.failuresAfter, t.firstFailure = true, 0, time.Time{}
		} else {
			if t.failuresAfter == 0 {
				t.firstFailure = o.attempt.At
			}
			t.failuresAfter++
			t.lastClass = o.attempt.ErrorClass
		}
		t.gone = t.gone || o.gone
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
		rows, err := tx.Query(ctx, `UPDATE webhook.endpoints SET consecutive_failures = 0, failing_since = NULL,
				failing_announced = `+endedStreak("$2")+`
			WHERE id = ANY($1) AND (consecutive_failures <> 0 OR failing_since IS NOT NULL OR failing_announced IS NOT NULL)
			RETURNING tenant, id, failing_announced`, healthy, w.failingAfter)
		if err != nil {
			return out, fmt.Errorf("reset endpoint failures: %w", err)
		}
		var tenant, id string
		var announced *time.Time
		if _, err := pgx.ForEachRow(rows, []any{&tenant, &id, &announced}, func() error {
			if announced != nil {
				out.notices = append(out.notices, recovered(tenant, id, *announced))
			}
			return nil
		}); err != nil {
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
			t.tenant, id, t.reset, t.failuresAfter, t.firstFailure, w.failingAfter).Scan(&failures, &since, &enabled, &announced)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("track endpoint failures: %w", err)
		}
		// A success in the batch ended the announced streak (a streak
		// after it has a later first failure).
		if t.reset && announced != nil && (since == nil || !since.Equal(*announced)) {
			out.notices = append(out.notices, recovered(t.tenant, id, *announced))
		}
		if enabled && since != nil && failures >= w.failingAfter && (announced == nil || !announced.Equal(*since)) {
			out.notices = append(out.notices, notice{typ: TypeAttemptFailing, tenant: t.tenant, endpointID: id, since: *since, failures: failures,
				lastErrorClass: t.lastClass})
		}
		reason := ""
		switch {
		case !enabled:
		case t.gone:
			reason = "the endpoint answered 410 Gone"
		case since != nil && failures >= w.disable.Failures && batch[len(batch)-1].finishedAt.Sub(*since) >= w.disable.Span:
			reason = fmt.Sprintf("%d consecutive failed attempts since %s", failures, since.UTC().Format(time.RFC3339))
		}
		if reason != "" {
			if _, err := tx.Exec(ctx, `UPDATE webhook.endpoints SET enabled = false, disabled_reason = $3, updated_at = now(),
					change_seq = nextval('webhook.endpoint_changes') WHERE tenant = $1 AND id = $2`, t.tenant, id, reason); err != nil {
				return out, fmt.Errorf("disable endpoint: %w", err)
			}
			out.disabled = append(out.disabled, disabledEndpoint{t.tenant, id, reason})
		}
	}
	for _, o := range batch {
		if o.exhausted() {
			out.notices = append(out.notices, notice{typ: TypeAttemptExhausted, tenant: o.job.tenant, endpointID: o.job.endpointID,
				deliveryID: o.job.deliveryID, eventID: o.job.event.ID, eventType: o.job.event.Type, attempts: o.attempt.N, lastErrorClass: o.attempt.ErrorClass})
		}
	}
	return out, nil
}

func nilIfBlank(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
