package webhooker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/lifecycle"
)

// leases keeps this replica's claims alive while it holds their
// deliveries (docs/architecture.md §16). A delivery is held from the
// moment it is claimed — recorded for this replica (a webhook.claims row
// lists it) or taken from webhook.due by the scheduler — until its
// outcome is written, or until the replica lets it go without an attempt
// (the dispatcher had no room, its event could not be read). Every
// renewal moves the end of every held claim to now + claim; a replica
// that dies stops renewing, and what it held is taken by the others
// once the claim ends, seconds later.
//
// A webhook.claims row lists the deliveries of one fan-out batch: it is
// renewed while any of them is held, and when none is any more it is
// ended at once, so a delivery of it that was let go without an attempt
// is due straight away (the scheduler turns the unattempted deliveries of
// an ended claim into due rows).
type leases struct {
	owner string // this replica, in webhook.due.claimed_by
	pool  *pgxpool.Pool
	now   func() time.Time
	claim time.Duration
	log   *slog.Logger

	mu    sync.Mutex
	held  map[string]int64 // delivery id -> the webhook.claims row listing it; 0: a webhook.due row
	rows  map[int64]int    // webhook.claims row -> deliveries held
	ended []int64          // webhook.claims rows with nothing held any more
}

func newLeases(pool *pgxpool.Pool, claim time.Duration, now func() time.Time, log *slog.Logger) *leases {
	return &leases{owner: newID(), pool: pool, now: now, claim: claim, log: log, held: map[string]int64{}, rows: map[int64]int{}}
}

// holdRecorded holds jobs recorded claimed for this replica: each names
// its webhook.claims row (job.claim); the others are not held.
func (l *leases) holdRecorded(jobs []job) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, j := range jobs {
		if j.claim == 0 {
			continue
		}
		if _, ok := l.held[j.deliveryID]; !ok {
			l.held[j.deliveryID] = j.claim
			l.rows[j.claim]++
		}
	}
}

// holdDue holds deliveries the scheduler claimed from webhook.due and
// returns those this replica did not hold already. One it held already
// had its claim end while it waited here (renewals failed: Postgres was
// unreachable longer than the claim) and is still queued or running: it
// must not be attempted a second time, and its claim is now its due row.
func (l *leases) holdDue(ids []string) (fresh []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		row, ok := l.held[id]
		if !ok {
			l.held[id] = 0
			fresh = append(fresh, id)
			continue
		}
		if row != 0 {
			l.held[id] = 0
			l.dropRow(row)
		}
	}
	return fresh
}

// dropRow counts one delivery of a claims row no longer held through it;
// l.mu held.
func (l *leases) dropRow(row int64) {
	if l.rows[row]--; l.rows[row] <= 0 {
		delete(l.rows, row)
		l.ended = append(l.ended, row)
	}
}

// release lets deliveries go: their outcome is written, or they will not
// be attempted by this replica. A delivery that is not held is ignored.
func (l *leases) release(ids ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		row, ok := l.held[id]
		if !ok {
			continue
		}
		delete(l.held, id)
		if row != 0 {
			l.dropRow(row)
		}
	}
}

// releaseJobs releases the deliveries of jobs.
func (l *leases) releaseJobs(jobs []job) {
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.deliveryID
	}
	l.release(ids...)
}

// len is how many deliveries are held.
func (l *leases) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.held)
}

// renew moves the end of every held claim to now + claim, and ends the
// claims rows that hold nothing any more. A due row renews only while it
// still names this replica: an outcome that scheduled a retry cleared it,
// and another replica that took it after the claim ended named itself.
func (l *leases) renew(ctx context.Context) error {
	return l.extend(ctx, l.claim, false)
}

// giveBack ends every claim this replica holds, for the other replicas to
// take at once: a replica that stops gracefully calls it once its
// attempts have finished and their outcomes are written, so what it
// still holds was never attempted.
func (l *leases) giveBack(ctx context.Context) error {
	return l.extend(ctx, 0, true)
}

// extend moves the end of every held claim to now + by, and ends the
// claims rows that hold nothing any more; forget lets everything go.
func (l *leases) extend(ctx context.Context, by time.Duration, forget bool) error {
	l.mu.Lock()
	due := make([]string, 0, len(l.held))
	for id, row := range l.held {
		if row == 0 {
			due = append(due, id)
		}
	}
	rows := make([]int64, 0, len(l.rows))
	for row := range l.rows {
		rows = append(rows, row)
	}
	ended := l.ended
	l.ended = nil
	if forget {
		l.held, l.rows = map[string]int64{}, map[int64]int{}
	}
	l.mu.Unlock()
	if len(due)+len(rows)+len(ended) == 0 {
		return nil
	}
	now := l.now()
	_, err := l.pool.Exec(ctx, `WITH d AS (
			UPDATE webhook.due SET due_at = $3 WHERE delivery_id = ANY($1) AND claimed_by = $4
		), c AS (
			UPDATE webhook.claims SET claimed_until = $3 WHERE id = ANY($2)
		)
		UPDATE webhook.claims SET claimed_until = $5 WHERE id = ANY($6)`,
		due, rows, now.Add(by), l.owner, now, ended)
	if err != nil && !forget {
		l.mu.Lock()
		l.ended = append(l.ended, ended...)
		l.mu.Unlock()
		return fmt.Errorf("renew claims: %w", err)
	}
	return nil
}

// renewEvery is how often a replica renews its claims: four times per
// claim, so three renewals in a row can fail before a claim ends under a
// live replica.
func renewEvery(claim time.Duration) time.Duration { return claim / 4 }

// run renews every renewEvery(claim) until ctx ends.
func (l *leases) run(ctx context.Context) {
	lifecycle.Every(ctx, renewEvery(l.claim), func(ctx context.Context) {
		if err := l.renew(ctx); err != nil && ctx.Err() == nil {
			l.log.WarnContext(ctx, "renew delivery claims", "held", l.len(), "error", err)
		}
	})
}
