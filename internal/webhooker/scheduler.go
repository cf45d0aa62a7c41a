package webhooker

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/pkg/events"
)

// scheduler takes due deliveries from Postgres — retries, and first
// attempts whose claim expired because the replica that made them died —
// claims them with FOR UPDATE SKIP LOCKED so replicas never take the same
// one, and hands them to the dispatcher. Retries wait here, never in the
// hot consumer's ack-pending set (docs/architecture.md §9).
//
// It claims no more than its dispatcher can start soon (hold): a replica
// that is busy leaves due deliveries to the others, so replicas share a
// large fan-out (recorded due, see fanout.recordShared) and no claim
// expires while its delivery waits in a busy replica's memory.
type scheduler struct {
	ledger  *delivery.Ledger // claims what is due
	str     jetstream.Stream
	queue   jobQueue
	now     func() time.Time
	claim   time.Duration // how long a claim lasts unless renewed
	leases  *leases       // renews what this replica holds
	batch   int           // most deliveries claimed by one statement
	hold    int           // most jobs the dispatcher holds, queued or running, after a claim
	log     *slog.Logger
	metrics *Metrics
	poke    chan struct{} // ticks at once (a shared fan-out was recorded)
}

// jobQueue is where the scheduler hands the deliveries it claimed: the
// dispatcher.
type jobQueue interface {
	Submit(jobs ...delivery.Job) []delivery.Job
	Room(limit int) int
}

// nudge makes the scheduler tick at once instead of at its next interval.
func (s *scheduler) nudge() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// tick claims and submits the deliveries due at now; it returns how many.
func (s *scheduler) tick(ctx context.Context) (int, error) {
	n, _, err := s.claimDue(ctx)
	return n, err
}

// claimDue claims and submits the deliveries due at now, at most as many
// as the dispatcher has room for (Ledger.ClaimDue), and returns how many
// and how many it asked for.
func (s *scheduler) claimDue(ctx context.Context) (int, int, error) {
	now := s.now()
	limit := min(s.batch, s.queue.Room(s.hold))
	claimed, err := s.ledger.ClaimDue(ctx, now, now.Add(s.claim), s.leases.owner, limit)
	if err != nil {
		return 0, limit, err
	}
	live := make([]dueClaim, len(claimed))
	for i, d := range claimed {
		live[i] = dueClaim{id: d.ID, attempt: d.Attempts + 1}
	}
	// A due row still naming another replica was claimed by it and its
	// claim ended without an outcome: it died, or could not renew.
	takenOver := 0
	for _, d := range claimed {
		if d.ClaimedBy != "" && d.ClaimedBy != s.leases.owner {
			takenOver++
		}
	}
	if takenOver > 0 {
		s.metrics.claimsEnded("taken_over", takenOver)
		s.log.WarnContext(ctx, "claimed deliveries whose claim by another replica ended without an outcome (that replica died or could not renew its claims)", "deliveries", takenOver)
	}
	fresh := make(map[string]bool, len(live))
	for _, id := range s.leases.holdDue(live, now.Add(s.claim)) {
		fresh[id] = true
	}
	jobs := make([]delivery.Job, 0, len(claimed))
	// The deliveries of a fan-out share their event, read and encoded
	// once per claim, not once per delivery.
	type loadedEvent struct {
		ev   events.Event
		body []byte
	}
	loaded := map[int64]loadedEvent{}
	for _, d := range claimed {
		if !fresh[d.ID] { // already queued or running here
			continue
		}
		le, ok := loaded[d.Seq]
		if !ok {
			ev, err := s.event(ctx, uint64(d.Seq))
			if err != nil {
				s.log.WarnContext(ctx, "load event for delivery", "delivery_id", d.ID, "event_seq", d.Seq, "error", err)
				s.leases.release(d.ID, d.Attempts+1) // tried again when the claim ends
				continue
			}
			le.ev = ev
			// An encoding that fails leaves body nil: each attempt then
			// encodes (and reports the error) itself.
			le.body, _ = ev.MarshalJSON()
			loaded[d.Seq] = le
		}
		jobs = append(jobs, delivery.Job{DeliveryID: d.ID, Tenant: d.Tenant, EndpointID: d.EndpointID, Event: le.ev, Body: le.body, Attempt: d.Attempts + 1, Scheduled: true})
	}
	s.metrics.scheduled(len(jobs))
	s.leases.releaseJobs(s.queue.Submit(jobs...)) // no room: tried again when the claim ends
	return len(live), limit, nil
}

// event reads one event back from the stream by sequence.
func (s *scheduler) event(ctx context.Context, seq uint64) (events.Event, error) {
	m, err := s.str.GetMsg(ctx, seq)
	if err != nil {
		return events.Event{}, err
	}
	return events.ParseStored(events.Message{Subject: m.Subject, Data: m.Data, Header: m.Header, Seq: seq, Timestamp: m.Time})
}

// run ticks every interval, and when nudged, until ctx ends; a claim that
// got all it asked for ticks again at once. The first tick is one
// interval after the start, like every other (tests that drive the
// scheduler themselves set a long interval and see no tick of its own).
func (s *scheduler) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.poke:
		}
		for {
			n, asked, err := s.claimDue(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "schedule deliveries", "error", err)
			}
			if n == 0 || n < asked || ctx.Err() != nil {
				break
			}
		}
	}
}
