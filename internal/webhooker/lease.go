package webhooker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/eventline/eventline/internal/lifecycle"
	"github.com/eventline/eventline/internal/webhooker/delivery"
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
// A replica attempts a delivery only while its claim has at least half a
// claim to run (usable): renewals that failed or came late (Postgres
// unreachable, or the replica starved of CPU or connections) make it let
// the delivery go, due for any replica, instead of sending it after its
// claim may have ended and another replica may have sent it too. The end
// it compares with is the one Postgres confirmed last: a renewal counts
// only for the rows it found still claimed by this replica.
//
// A webhook.claims row lists the deliveries of one fan-out batch: it is
// renewed while any of them is held, and when none is any more it is
// ended at once, so a delivery of it that was let go without an attempt
// is due straight away (the scheduler turns the unattempted deliveries of
// an ended claim into due rows).
type leases struct {
	owner  string           // this replica, in webhook.due.claimed_by
	ledger *delivery.Ledger // writes the renewals (on a connection of their own)
	now    func() time.Time
	claim  time.Duration
	log    *slog.Logger

	mu     sync.Mutex
	held   map[string]hold // by delivery id
	rows   map[int64]int   // webhook.claims row -> deliveries held
	ended  []int64         // webhook.claims rows with nothing held any more
	chunks map[int64]bool  // webhook.chunks rows being worked on here
}

// hold is one delivery this replica holds.
type hold struct {
	row     int64     // the webhook.claims row listing it; 0: its webhook.due row
	until   time.Time // when its claim ends, as last written to Postgres
	attempt int       // the attempt it is held for (Job.Attempt)
}

func newLeases(l *delivery.Ledger, claim time.Duration, now func() time.Time, log *slog.Logger) *leases {
	return &leases{owner: delivery.NewID(), ledger: l, now: now, claim: claim, log: log, held: map[string]hold{}, rows: map[int64]int{}, chunks: map[int64]bool{}}
}

// holdChunk renews a chunk of a shared fan-out while this replica works on
// it: from its claim until its deliveries are recorded (which deletes it)
// or the replica gives up on it (releaseChunk).
func (l *leases) holdChunk(id int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.chunks[id] = true
}

// releaseChunk stops renewing a chunk.
func (l *leases) releaseChunk(id int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.chunks, id)
}

// holdRecorded holds jobs recorded claimed for this replica until until:
// each names its webhook.claims row (Job.Claim); the others are not held.
func (l *leases) holdRecorded(jobs []delivery.Job, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, j := range jobs {
		if j.Claim == 0 {
			continue
		}
		if _, ok := l.held[j.DeliveryID]; !ok {
			l.held[j.DeliveryID] = hold{row: j.Claim, until: until, attempt: j.Attempt}
			l.rows[j.Claim]++
		}
	}
}

// dueClaim is a delivery the scheduler claimed from webhook.due for its
// attempt-th attempt.
type dueClaim struct {
	id      string
	attempt int
}

// holdDue holds deliveries the scheduler claimed from webhook.due until
// until and returns those this replica did not hold already for the same
// attempt or a later one. One it held already for that attempt had its
// claim end while it waited here (renewals failed: Postgres was
// unreachable longer than the claim) and is still queued or running: it
// must not be attempted a second time, and its claim is now its due row.
// One held for an earlier attempt has that attempt's outcome written (the
// claim counts it) and only waits to be released: the new attempt (a
// retry made by hand at that moment) is fresh, and the late release of
// the earlier attempt leaves it held.
func (l *leases) holdDue(claims []dueClaim, until time.Time) (fresh []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range claims {
		h, ok := l.held[c.id]
		l.held[c.id] = hold{until: until, attempt: max(c.attempt, h.attempt)}
		if !ok || h.attempt < c.attempt {
			fresh = append(fresh, c.id)
		}
		if ok && h.row != 0 {
			l.dropRow(h.row)
		}
	}
	return fresh
}

// usable reports whether the delivery id may be attempted now: it is not
// held (an attempt made before its delivery is recorded claims nothing),
// or its claim has at least half a claim to run.
func (l *leases) usable(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.held[id]
	return !ok || h.until.Sub(l.now()) >= l.claim/2
}

// dropRow counts one delivery of a claims row no longer held through it;
// l.mu held.
func (l *leases) dropRow(row int64) {
	if l.rows[row]--; l.rows[row] <= 0 {
		delete(l.rows, row)
		l.ended = append(l.ended, row)
	}
}

// release lets a delivery go after its attempt-th attempt: its outcome is
// written, or this replica will not make it. A delivery that is not held,
// or is held for another attempt, is left alone.
func (l *leases) release(id string, attempt int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.held[id]
	if !ok || h.attempt != attempt {
		return
	}
	delete(l.held, id)
	if h.row != 0 {
		l.dropRow(h.row)
	}
}

// releaseJobs releases the deliveries of jobs, each for its attempt.
func (l *leases) releaseJobs(jobs []delivery.Job) {
	for _, j := range jobs {
		l.release(j.DeliveryID, j.Attempt)
	}
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
// claims rows that hold nothing any more; forget lets everything go, and
// clears the due rows' claimer (given back, not lapsed). A held delivery
// counts as renewed only when Postgres found its row still claimed by this
// replica: one another replica took after its claim ended keeps its old
// end here, and usable refuses it.
func (l *leases) extend(ctx context.Context, by time.Duration, forget bool) error {
	l.mu.Lock()
	due := make([]string, 0, len(l.held))
	for id, h := range l.held {
		if h.row == 0 {
			due = append(due, id)
		}
	}
	rows := make([]int64, 0, len(l.rows))
	for row := range l.rows {
		rows = append(rows, row)
	}
	chunks := make([]int64, 0, len(l.chunks))
	for id := range l.chunks {
		chunks = append(chunks, id)
	}
	ended := l.ended
	l.ended = nil
	if forget {
		l.held, l.rows, l.chunks = map[string]hold{}, map[int64]int{}, map[int64]bool{}
	}
	l.mu.Unlock()
	if len(due)+len(rows)+len(ended)+len(chunks) == 0 {
		return nil
	}
	now := l.now()
	until := now.Add(by)
	confirmed, err := l.ledger.Renew(ctx, delivery.Renewal{Due: due, Rows: rows, Ended: ended, Chunks: chunks, Now: now, Until: until, Owner: l.owner, GiveBack: forget})
	if err != nil {
		if !forget {
			l.mu.Lock()
			l.ended = append(l.ended, ended...)
			l.mu.Unlock()
			return err
		}
		return nil
	}
	if forget {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range confirmed.Due {
		if h, ok := l.held[id]; ok && h.row == 0 && h.until.Before(until) {
			h.until = until
			l.held[id] = h
		}
	}
	if len(confirmed.Rows) > 0 {
		for id, h := range l.held {
			if confirmed.Rows[h.row] && h.until.Before(until) {
				h.until = until
				l.held[id] = h
			}
		}
	}
	return nil
}

// renewEvery is how often a replica renews its claims: four times per
// claim, so three renewals in a row can fail before a claim ends under a
// live replica.
func renewEvery(claim time.Duration) time.Duration { return claim / 4 }

// run renews every interval (0: renewEvery(claim)) until ctx ends.
func (l *leases) run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = renewEvery(l.claim)
	}
	lifecycle.Every(ctx, interval, func(ctx context.Context) {
		if err := l.renew(ctx); err != nil && ctx.Err() == nil {
			l.log.WarnContext(ctx, "renew delivery claims", "held", l.len(), "error", err)
		}
	})
}
