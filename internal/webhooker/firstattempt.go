package webhooker

import (
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"sync"
	"sync/atomic"
	"time"
)

// Attempt first. For an event's first delivery the fan-out handler makes
// the first attempts while it still holds the message, then records each
// delivery once, with its outcome, and acks: one insert per delivery
// instead of an insert, a claim and an update later. Nothing is acked
// before it is recorded, so a crash between an attempt and its record
// only repeats the attempt (the same webhook-id) when the event is
// redelivered; a redelivered event takes the usual path (record, then
// attempt), which never repeats a recorded delivery, and so does an event
// older than FirstAttemptConfig.MaxAge: a consumer created anew starts on
// first deliveries of events that may have been delivered already.
//
// The handler does not wait for endpoints that are slow: one known to be
// slow (endpointSpeed) is recorded and attempted as usual, and a wait ends when, for
// FirstAttemptConfig.Wait, no attempt of the event finished and none of
// the endpoints it still waits for answered any other attempt. An attempt
// queued behind its endpoint's earlier ones (its concurrency cap, many
// handlers' events to one endpoint) is waited for while that queue moves,
// up to FirstAttemptConfig.Max; without that, a busy but fast endpoint
// counted as slow and its events were written twice (pending, then the
// outcome). Attempts still running when the wait ends are recorded as
// claimed, and their outcomes are logged when they come, after that
// record committed. firstGate says when the usual path is taken instead.

// FirstAttemptConfig bounds how long the fan-out waits for first attempts.
type FirstAttemptConfig struct {
	// Wait ends the wait when no attempt of the event finished, and no
	// endpoint it still waits for answered another attempt, for this
	// long; an endpoint whose attempt outlasts it, or that a wait ended
	// without, counts as slow and is not waited for during the next 10 s.
	// Default 50ms; negative: record first, then attempt, always.
	Wait time.Duration
	// Max bounds the whole wait. Default 2s: messages prefetched behind
	// the one a handler holds (consume.Prefetch) keep ageing towards the
	// AckWait (WEBHOOK_ACK_WAIT, 10 s).
	Max time.Duration
	// MaxEndpoints: an event to more endpoints is recorded first.
	// Default 1,000, the default of Config.ShareAbove: an event not
	// shared is attempted first. With attempts in flight kept to what
	// the endpoints need (attempt.DispatchConfig.MinWorkers), the first
	// attempts of 1,000 endpoints that answer at once finish within the
	// wait, and writing each delivery once cost 1 -> 1,000 about four
	// tenths less Postgres CPU per delivery than recording it first
	// (BENCHMARKS.md, Webhooker, "An adaptive limit on attempts in
	// flight"). Before the limit adapted, 512 attempts in flight made
	// most of those waits end early, and the default was 100.
	MaxEndpoints int
	// MaxAge: an event recorded longer ago than this is recorded first
	// even on its first delivery — a backlog, or a consumer that was
	// deleted and created again and starts over from the beginning of the
	// stream, whose deliveries may exist already. Default 1 minute.
	MaxAge time.Duration
	// RecordFor is how long a failed record of attempted deliveries is
	// tried again before the event is left to be redelivered (and its
	// deliveries attempted again). Default 20s; the message is kept
	// meanwhile by in-progress acks (package consume).
	RecordFor time.Duration
}

func (c FirstAttemptConfig) withDefaults() FirstAttemptConfig {
	if c.Wait == 0 {
		c.Wait = 50 * time.Millisecond
	}
	if c.Max <= 0 {
		c.Max = 2 * time.Second
	}
	if c.MaxEndpoints <= 0 {
		c.MaxEndpoints = DefaultShareAbove
	}
	if c.MaxAge <= 0 {
		c.MaxAge = time.Minute
	}
	if c.RecordFor <= 0 {
		c.RecordFor = 20 * time.Second
	}
	return c
}

// firstGate decides whether an event's first attempts are made before
// its deliveries are recorded. It says no — record first — for a
// redelivery; for an event to more than MaxEndpoints; for an event older
// than MaxAge; for an event at or below the highest stream sequence taken
// before NATS last reconnected (a server that restarts may deliver again,
// counted as first deliveries, messages whose deliveries were recorded
// and whose acks it lost); and for a while after recording failed
// (Postgres down: attempts made first could not be recorded and would be
// made again).
type firstGate struct {
	cfg      FirstAttemptConfig
	maxSeq   atomic.Uint64 // highest stream sequence the fan-out took
	boundary atomic.Uint64 // maxSeq when NATS last reconnected
	trouble  atomic.Int64  // when recording last failed, unix ns
}

// troubleHold is how long the fan-out records first after a failed record.
const troubleHold = 30 * time.Second

// taken notes a message the fan-out took.
func (g *firstGate) taken(seq uint64) {
	for cur := g.maxSeq.Load(); seq > cur && !g.maxSeq.CompareAndSwap(cur, seq); cur = g.maxSeq.Load() {
	}
}

// reconnected: messages taken so far may come again as first deliveries.
func (g *firstGate) reconnected() { g.boundary.Store(g.maxSeq.Load()) }

// failed notes a failed record.
func (g *firstGate) failed() { g.trouble.Store(time.Now().UnixNano()) }

// recording tells whether records have not failed lately: the chunks of a
// shared fan-out are attempted first only then.
func (g *firstGate) recording() bool {
	return g.cfg.Wait > 0 && time.Now().UnixNano()-g.trouble.Load() > int64(troubleHold)
}

// attemptFirst tells whether the message's first attempts may come
// before its record: delivered says how often NATS delivered it, and
// endpoints how many endpoints the event goes to.
func (g *firstGate) attemptFirst(seq, delivered uint64, recordedAt time.Time, endpoints int) bool {
	now := time.Now() // the real clock, like the event's recorder
	return g.cfg.Wait > 0 && delivered == 1 && endpoints <= g.cfg.MaxEndpoints && now.Sub(recordedAt) < g.cfg.MaxAge && seq > g.boundary.Load() &&
		now.UnixNano()-g.trouble.Load() > int64(troubleHold)
}

// firstSink is where every attempt reports its outcome. An outcome the
// fan-out waits for — a first attempt made before its delivery is
// recorded — goes to that event's collector, found by delivery id (each
// attempt reports once); every other goes to the result writer.
type firstSink struct {
	mu      sync.Mutex
	waiting map[string]*firstAttempts // delivery id -> its event's collector
	log     func(delivery.Outcome)    // the result writer
}

func newFirstSink(log func(delivery.Outcome)) *firstSink {
	return &firstSink{waiting: map[string]*firstAttempts{}, log: log}
}

// expect routes the outcomes of jobs to w, until each has reported.
func (s *firstSink) expect(w *firstAttempts, jobs []delivery.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range jobs {
		s.waiting[j.DeliveryID] = w
	}
}

// forget stops routing the outcomes of jobs that will not be attempted.
func (s *firstSink) forget(jobs []delivery.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range jobs {
		delete(s.waiting, j.DeliveryID)
	}
}

// Report hands o to the collector waiting for it, or to the log: after
// the collector's record committed it logs o like any later attempt.
func (s *firstSink) Report(o delivery.Outcome) {
	s.mu.Lock()
	w := s.waiting[o.Job.DeliveryID]
	delete(s.waiting, o.Job.DeliveryID)
	s.mu.Unlock()
	if w != nil && w.take(o) {
		return
	}
	s.log(o)
}

// firstAttempts collects the outcomes of one event's first attempts.
type firstAttempts struct {
	mu      sync.Mutex
	state   int // collecting, recording, recorded or abandoned
	pending int // attempts not finished while collecting
	// waitingOn is the endpoint of each attempt not finished (delivery id
	// -> endpoint id), whose queues the wait watches (attempting).
	waitingOn map[string]string
	done      []delivery.Outcome
	late      []delivery.Outcome // finished while the record commits
	progress  chan struct{}
}

const (
	collecting = iota
	recording
	recorded
	abandoned
)

func newFirstAttempts() *firstAttempts {
	return &firstAttempts{progress: make(chan struct{}, 1)}
}

// take keeps o when it belongs to the event's record; false means the
// record is committed and o is logged like any later attempt.
func (w *firstAttempts) take(o delivery.Outcome) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch w.state {
	case collecting:
		w.done = append(w.done, o)
		w.pending--
		delete(w.waitingOn, o.Job.DeliveryID)
		select {
		case w.progress <- struct{}{}:
		default:
		}
		return true
	case recording:
		w.late = append(w.late, o)
		return true
	case abandoned:
		return true // nothing was recorded: the redelivered event is attempted again
	}
	return false
}

// attempting adds the attempts of jobs, whose endpoints' queues the wait
// watches; dropped takes back those of jobs not made after all.
func (w *firstAttempts) attempting(jobs []delivery.Job) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waitingOn == nil {
		w.waitingOn = make(map[string]string, len(jobs))
		// Sized once: an Outcome carries its Job and event, and growing
		// done by appending copied each many times over.
		w.done = make([]delivery.Outcome, 0, len(jobs))
	}
	for _, j := range jobs {
		w.waitingOn[j.DeliveryID] = j.EndpointID
	}
	w.pending += len(jobs)
}

func (w *firstAttempts) dropped(jobs []delivery.Job) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, j := range jobs {
		delete(w.waitingOn, j.DeliveryID)
	}
	w.pending -= len(jobs)
}

// queueMoving tells whether an endpoint the wait still waits for
// answered an attempt lately (moving; nil: none does).
func (w *firstAttempts) queueMoving(moving func(endpointID string) bool) bool {
	if moving == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ep := range w.waitingOn {
		if moving(ep) {
			return true
		}
	}
	return false
}

// wait collects outcomes until every attempt finished, the wait went idle
// (for cfg.Wait no attempt finished and moving said no endpoint still
// waited for answered another), cfg.Max passed (capped) or stop closed;
// it returns the outcomes, and those that finish later wait for recorded
// or abandon.
func (w *firstAttempts) wait(cfg FirstAttemptConfig, moving func(endpointID string) bool, stop <-chan struct{}) (done []delivery.Outcome, capped bool) {
	if w.unfinished() {
		// One timer: the deadline is checked on progress, and without
		// progress the idle timer (shorter) ends the wait.
		deadline := time.Now().Add(cfg.Max)
		idle := time.NewTimer(cfg.Wait)
	collect:
		for w.unfinished() {
			select {
			case <-w.progress:
				if time.Now().After(deadline) {
					capped = true
					break collect
				}
				idle.Reset(cfg.Wait)
			case <-idle.C:
				if !time.Now().Before(deadline) {
					capped = true
					break collect
				}
				if w.queueMoving(moving) {
					idle.Reset(cfg.Wait) // queued behind attempts that finish
					continue
				}
				break collect
			case <-stop:
				break collect
			}
		}
		idle.Stop()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.state = recording
	return w.done, capped
}

func (w *firstAttempts) unfinished() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending > 0
}

// recorded hands the outcomes that finished while the record committed to
// log, and every later one (take returns false).
func (w *firstAttempts) recorded(log func(delivery.Outcome)) {
	w.mu.Lock()
	late := w.late
	w.late, w.state = nil, recorded
	w.mu.Unlock()
	for _, o := range late {
		log(o)
	}
}

// abandon drops the outcomes: the record failed and the event will be
// delivered again.
func (w *firstAttempts) abandon() {
	w.mu.Lock()
	w.late, w.state = nil, abandoned
	w.mu.Unlock()
}

// endpointSpeed remembers which endpoints are slow: one whose latest
// answer took at least slowAfter, until it answers faster; one a wait
// gave up on at Max (rate limited, a long queue) for hold; one a wait
// ended without because it answered nothing for the wait (hanging) for
// idleHold. A single slow answer or idle wait is not taken for a slow
// endpoint for long: on a loaded machine, or while connections open at
// start-up, a fast endpoint answers nothing for 50 ms because the replica
// itself was starved of CPU, and it then counted as slow for 10 s, every
// event to it written twice (pending, then its outcome).
//
// What it knows of an endpoint that has not answered for forget is
// dropped (forgetBefore, at most once every sweepEvery): the maps hold the
// endpoints attempted lately, not every endpoint ever attempted, so they
// do not grow with endpoints created and deleted over a replica's life.
type endpointSpeed struct {
	slowAfter, hold, idleHold time.Duration
	forget, sweepEvery        time.Duration
	now                       func() time.Time
	until                     sync.Map     // endpoint id -> *atomic.Int64: slow until (unix ns)
	answers                   sync.Map     // endpoint id -> *answer: its latest answer
	swept                     atomic.Int64 // last sweep (unix ns)
}

// answer is an endpoint's latest answer: when it came and whether it was
// slow.
type answer struct {
	at   atomic.Int64 // unix ns
	slow atomic.Bool
}

func newEndpointSpeed(slowAfter time.Duration) *endpointSpeed {
	return &endpointSpeed{slowAfter: slowAfter, hold: 10 * time.Second, idleHold: time.Second,
		forget: 10 * time.Minute, sweepEvery: time.Minute, now: time.Now}
}

// sweepDue tells whether a sweep is due at now (at most one every
// sweepEvery), and takes it when it is.
func (s *endpointSpeed) sweepDue(now int64) bool {
	last := s.swept.Load()
	return now-last >= int64(s.sweepEvery) && s.swept.CompareAndSwap(last, now)
}

// forgetBefore drops the latest answers older than horizon and the slow
// marks that ended before it. An endpoint forgotten is unknown again: its
// next event waits for its first attempt, as for a new endpoint. An
// observation racing the sweep of its own entry can be lost the same way,
// which costs the same and no more. It ranges over every endpoint known
// (BenchmarkEndpointSpeedSweep: tens of ms at 100,000), so observe runs
// it on a goroutine of its own, off the attempt's path.
func (s *endpointSpeed) forgetBefore(horizon int64) {
	s.answers.Range(func(id, v any) bool {
		if v.(*answer).at.Load() < horizon {
			s.answers.CompareAndDelete(id, v)
		}
		return true
	})
	s.until.Range(func(id, v any) bool {
		if v.(*atomic.Int64).Load() < horizon {
			s.until.CompareAndDelete(id, v)
		}
		return true
	})
}

// isSlow tells whether the fan-out should not wait for id.
func (s *endpointSpeed) isSlow(id string) bool {
	if a, ok := s.answers.Load(id); ok && a.(*answer).slow.Load() {
		return true
	}
	v, ok := s.until.Load(id)
	return ok && v.(*atomic.Int64).Load() > s.now().UnixNano()
}

// observe records how long an attempt of id took, which just ended.
func (s *endpointSpeed) observe(id string, took time.Duration) {
	now := s.now().UnixNano()
	v, ok := s.answers.Load(id)
	if !ok {
		// Stored with its time, never as a zero a sweep would drop.
		a := new(answer)
		a.at.Store(now)
		v, _ = s.answers.LoadOrStore(id, a)
	}
	a := v.(*answer)
	a.slow.Store(took >= s.slowAfter)
	a.at.Store(now)
	if s.sweepDue(now) {
		go s.forgetBefore(now - int64(s.forget))
	}
}

// answeredWithin tells whether id answered an attempt at most d ago: its
// queue moves.
func (s *endpointSpeed) answeredWithin(id string, d time.Duration) bool {
	v, ok := s.answers.Load(id)
	return ok && s.now().UnixNano()-v.(*answer).at.Load() <= int64(d)
}

// markSlow flags id as slow from now for hold, or for idleHold when the
// wait that ended without its attempt was not capped.
func (s *endpointSpeed) markSlow(id string, capped bool) {
	hold := s.hold
	if !capped {
		hold = s.idleHold
	}
	until := s.now().Add(hold).UnixNano()
	v, ok := s.until.Load(id)
	if !ok {
		// Stored with its end, never as a zero a sweep would drop.
		n := new(atomic.Int64)
		n.Store(until)
		v, _ = s.until.LoadOrStore(id, n)
	}
	v.(*atomic.Int64).Store(until)
}
