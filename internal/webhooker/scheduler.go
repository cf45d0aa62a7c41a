package webhooker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
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

	// work makes the deliveries of a chunk of a shared fan-out (nil: the
	// scheduler takes no chunks); chunkSize is the most endpoints of one.
	// A chunk is taken only while the dispatcher has room for all of it
	// (at most hold), and at most hold/chunkSize at once, each in its own
	// goroutine (working counts them, wg waits for them).
	work      func(ctx context.Context, c delivery.Chunk, ev events.Event, body []byte)
	chunkSize int
	working   atomic.Int32
	wg        sync.WaitGroup
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

// tick claims and submits the deliveries due at now, and takes the chunks
// of shared fan-outs it has room for; it returns how many deliveries.
func (s *scheduler) tick(ctx context.Context) (int, error) {
	n, _, err := s.claimDue(ctx)
	return n, err
}

// claimDue claims and submits the deliveries due at now, and takes the
// chunks of shared fan-outs (takeChunks), at most as many as the
// dispatcher has room for (Ledger.ClaimDue); it returns how many
// deliveries it claimed and how many it asked for.
func (s *scheduler) claimDue(ctx context.Context) (int, int, error) {
	now := s.now()
	room := s.queue.Room(s.hold)
	chunks, chunkRoom := s.chunkRoom(room)
	limit := min(s.batch, room-chunkRoom)
	claimed, taken, err := s.ledger.ClaimDue(ctx, now, now.Add(s.claim), s.leases.owner, limit, chunks)
	n := s.takeChunks(ctx, taken)
	if err != nil {
		return n, limit + chunkRoom, err
	}
	s.submitDue(ctx, now, claimed)
	return n + len(claimed), limit + chunkRoom, nil
}

// chunkRoom is how many chunks to take with room in the dispatcher, and
// the room they take: a chunk is taken only while the dispatcher has room
// for all of it (at most hold), and at most hold/chunkSize at once.
func (s *scheduler) chunkRoom(room int) (chunks, taken int) {
	if s.work == nil {
		return 0, 0
	}
	need := max(1, min(s.chunkSize, s.hold))
	free := max(1, s.hold/need) - int(s.working.Load())
	chunks = max(0, min(free, room/need))
	return chunks, chunks * need
}

// submitDue holds the due deliveries claimed at now and submits them.
func (s *scheduler) submitDue(ctx context.Context, now time.Time, claimed []delivery.Due) {
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
}

// takeChunks hands each chunk taken to work in a goroutine of its own and
// returns how many deliveries they hold. A chunk is renewed while it is
// worked on (leases.holdChunk) and its record deletes it; one whose work
// fails is let go, and taken again, recorded first, when its claim ends.
func (s *scheduler) takeChunks(ctx context.Context, chunks []delivery.Chunk) int {
	deliveries := 0
	for _, c := range chunks {
		deliveries += len(c.EndpointIDs)
		if c.ClaimedBy != "" && c.ClaimedBy != s.leases.owner {
			s.metrics.claimsEnded("taken_over", len(c.EndpointIDs))
			s.log.WarnContext(ctx, "took a chunk of a shared fan-out whose claim by another replica ended (that replica died or could not renew its claims): its deliveries are recorded before they are attempted", "chunk", c.ID, "deliveries", len(c.EndpointIDs))
		}
		s.leases.holdChunk(c.ID)
		s.working.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.nudge() // room for the next chunk
			defer s.working.Add(-1)
			defer s.leases.releaseChunk(c.ID)
			s.workChunk(context.WithoutCancel(ctx), c)
		}()
	}
	return deliveries
}

// workChunk reads the chunk's event back from the stream and hands it to
// work. A chunk whose event is gone from the stream (its retention ended)
// is dropped: nothing can deliver it.
func (s *scheduler) workChunk(ctx context.Context, c delivery.Chunk) {
	ev, err := s.event(ctx, uint64(c.Seq))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		s.log.WarnContext(ctx, "dropped a chunk of a shared fan-out whose event is gone from the stream", "chunk", c.ID, "event_seq", c.Seq, "deliveries", len(c.EndpointIDs))
		if err := s.ledger.DropChunk(ctx, c.ID); err != nil {
			s.log.WarnContext(ctx, "drop chunk", "chunk", c.ID, "error", err)
		}
		return
	}
	if err != nil {
		s.log.WarnContext(ctx, "load event for chunk (taken again when its claim ends)", "chunk", c.ID, "event_seq", c.Seq, "error", err)
		return
	}
	// An encoding that fails leaves body nil: each attempt then encodes
	// (and reports the error) itself.
	body, _ := ev.MarshalJSON()
	s.work(ctx, c, ev, body)
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

// wait waits for the chunks being worked on.
func (s *scheduler) wait() { s.wg.Wait() }
