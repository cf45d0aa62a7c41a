// Package attempt makes webhook delivery attempts: the Dispatcher runs
// them on a bounded pool of workers, as many at once as deliver the most
// per second (climber), with a queue, a concurrency cap and a rate limit
// per endpoint (rate limits shared by every replica through
// RateWindows), and the Attempter signs, posts through a Poster and
// classifies each outcome, its retry decided by delivery.NextAttempt. It
// declares what it consumes — Endpoints, a Sink for outcomes, an Observer,
// RateWindows — and package webhooker provides them; it opens no database
// connection and writes no table (../doc.go).
package attempt

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/eventline/eventline/internal/webhooker/delivery"
)

// DispatchConfig bounds concurrency. Zero values take defaults.
type DispatchConfig struct {
	// Workers is the most attempts in flight in this process. Default 512.
	Workers int
	// MinWorkers is where the limit on attempts starting at once begins
	// and the lowest it goes: between it and Workers, the dispatcher
	// keeps it where more attempts in flight would not deliver more per
	// second (climber). Default 16; equal to Workers, the limit is fixed.
	MinWorkers int
	// PerEndpoint is the most attempts in flight to one endpoint. Default 16.
	PerEndpoint int
	// DefaultRate is deliveries per second to an endpoint without its own
	// rate_limit; 0 is unlimited. Default 0.
	DefaultRate int
	// MaxQueued is how many due jobs one endpoint may hold in memory; past
	// it, jobs are let go (leases) and picked up again from Postgres
	// when their claim ends. Default 10,000.
	MaxQueued int
}

func (c DispatchConfig) withDefaults() DispatchConfig {
	if c.Workers <= 0 {
		c.Workers = 512
	}
	if c.MinWorkers <= 0 {
		c.MinWorkers = 16
	}
	c.MinWorkers = min(c.MinWorkers, c.Workers)
	if c.PerEndpoint <= 0 {
		c.PerEndpoint = 16
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = 10_000
	}
	return c
}

// Dispatcher runs attempts with a per-endpoint concurrency cap and rate
// limit, and a global cap. Each endpoint has its own queue: a slow or dead
// endpoint fills only its own queue and slots, never the workers that
// healthy endpoints need.
//
// Below the cap (Workers), a limit adapts how many attempts start at once
// (climber, every adaptEvery while there is work). An attempt counts
// against it only while it is fresh (staleAfter: eight times the mean
// attempt, 40 ms to 1 s): one that waits longer on its endpoint holds a
// worker, not the replica's CPU, and while an endpoint has such an attempt
// in flight its next attempts do not count against the limit at all, so
// slow endpoints never take the limit that the others need. Measured
// against the mean attempt, not a fixed time: when every attempt takes
// longer (the endpoints are far, or the replica's CPU is saturated), none
// is an outlier, and the limit keeps counting them.
type Dispatcher struct {
	cfg     DispatchConfig
	attempt func(context.Context, delivery.Job)
	rateOf  func(endpointID string) int
	// windows shares rate limits with the other replicas; nil: each
	// replica limits on its own.
	Windows RateWindows
	budgets map[string]limit // by endpoint id
	// idleBudget is how long the budget of an endpoint with no queue is
	// kept: past it a fresh budget is the same (a token bucket is full
	// again within a second, a shared budget's slot has passed), so
	// dropping it keeps the map to the endpoints that sent lately.
	idleBudget time.Duration
	swept      time.Time // when budgets were last swept

	mu       sync.Mutex
	ctx      context.Context
	queues   map[string]*endpointQueue
	inflight int
	queued   int              // jobs in every queue, not started
	waiting  []*endpointQueue // queues with work, blocked on the global cap or the limit
	wg       sync.WaitGroup

	climb      *climber
	limit      int            // most fresh attempts (climb.Limit)
	fresh      int            // attempts in flight that count against the limit
	started    [ringTicks]int // of those, by the interval they started in (gen % ringTicks)
	expired    uint64         // the last interval whose attempts are stale
	mean       time.Duration  // the mean attempt of the last window
	gen        uint64         // intervals since the start
	win        window         // since the climber's last observation
	slack      bool           // since the last tick, the limit had room and nothing waited on it
	adapting   bool           // the adapt goroutine runs
	congested  func() bool    // whether goroutines waited long for a CPU since the last call
	adaptEvery time.Duration

	// Attempts run on long-lived worker goroutines, started as the number
	// in flight first needs them (never more than Workers): a goroutine
	// per attempt would grow a fresh stack to the HTTP client's depth
	// every time. There are always at least as many workers as attempts
	// in flight, and work holds at most that many, so sending never blocks.
	work    chan task
	workers int
}

// queued is a job in an endpoint's queue, with when it was queued (its
// backlog age).
type queued struct {
	delivery.Job
	at time.Time
}

type task struct {
	q     *endpointQueue
	j     delivery.Job
	gen   uint64    // the interval it started in
	fresh bool      // it counted against the limit when it started
	at    time.Time // when it started
}

// ringTicks bounds how many intervals an attempt may count against the
// limit (Dispatcher.started).
const ringTicks = 64

// staleAfter is how long an attempt counts against the limit, to the
// interval: eight times the mean attempt of the last window, at least two
// intervals (40-60 ms), at most what the ring of intervals holds.
func (d *Dispatcher) staleAfter() time.Duration {
	return min(time.Duration(ringTicks-2)*d.adaptEvery, max(2*d.adaptEvery, 8*d.mean))
}

// minWindow is the shortest window the climber is shown: fewer
// completions compare too noisily.
const minWindow = 100 * time.Millisecond

type endpointQueue struct {
	id       string
	jobs     []queued
	inflight int
	gens     []uint64 // the intervals its attempts in flight started in
	// stale: the last of its attempts to finish had outlasted staleAfter
	// (a slow endpoint's), or had started not counting; its next attempts
	// do not count against the limit.
	stale   bool
	limiter budget // nil: unlimited
	perSec  int
	timer   *time.Timer // pending retry when rate limited
	waiting bool        // in dispatcher.waiting
}

func NewDispatcher(ctx context.Context, cfg DispatchConfig, attempt func(context.Context, delivery.Job), rateOf func(string) int) *Dispatcher {
	cfg = cfg.withDefaults()
	c := newClimber(cfg.MinWorkers, cfg.Workers)
	// Intervals count from 1: interval 0 is the one expired before any.
	sched := newSchedLatency()
	return &Dispatcher{cfg: cfg, attempt: attempt, rateOf: rateOf, ctx: ctx, queues: map[string]*endpointQueue{}, budgets: map[string]limit{},
		idleBudget: 2 * time.Second, work: make(chan task, cfg.Workers), climb: c, limit: c.Limit(), adaptEvery: 20 * time.Millisecond, gen: 1,
		congested: func() bool { return sched.mean() > schedLatencyTarget }}
}

// Submit queues jobs and returns those it had no room for; it never
// blocks.
func (d *Dispatcher) Submit(jobs ...delivery.Job) (dropped []delivery.Job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctx.Err() != nil {
		return jobs // shutting down: the claims are given back and another replica takes them
	}
	touched := map[*endpointQueue]bool{}
	for _, j := range jobs {
		q := d.queue(j.EndpointID)
		if len(q.jobs) >= d.cfg.MaxQueued {
			dropped = append(dropped, j) // stays pending in Postgres
			continue
		}
		q.jobs = append(q.jobs, queued{Job: j, at: time.Now()})
		d.queued++
		touched[q] = true
	}
	for q := range touched {
		d.start(q)
	}
	return dropped
}

func (d *Dispatcher) queue(id string) *endpointQueue {
	q, ok := d.queues[id]
	perSec := d.rateOf(id)
	if perSec <= 0 {
		perSec = d.cfg.DefaultRate
	}
	if !ok {
		q = &endpointQueue{id: id}
		d.queues[id] = q
	}
	if !ok || q.perSec != perSec {
		q.perSec = perSec
		q.limiter = d.budget(id, perSec)
	}
	return q
}

// budget returns the rate limit of an endpoint. It outlives the endpoint's
// queue, which goes whenever it is empty: a new queue must not start with a
// fresh budget, or deliveries arriving one at a time would never wait.
func (d *Dispatcher) budget(id string, perSec int) budget {
	if perSec <= 0 {
		delete(d.budgets, id)
		return nil
	}
	if b, ok := d.budgets[id]; ok && b.perSec == perSec {
		if !b.idle.IsZero() {
			b.idle = time.Time{}
			d.budgets[id] = b
		}
		return b.budget
	}
	b := limit{perSec: perSec, budget: newLocalBudget(perSec)}
	if d.Windows != nil {
		b.budget = newSharedBudget(d.ctx, d.Windows, id, perSec)
	}
	d.budgets[id] = b
	return b.budget
}

// limit is an endpoint's budget and the rate it was made for.
type limit struct {
	perSec int
	budget budget
	idle   time.Time // when its endpoint's queue went; zero while it has one
}

// sweepBudgets drops the budgets of endpoints without a queue for longer
// than idleBudget, at most once per idleBudget; d.mu held.
func (d *Dispatcher) sweepBudgets(now time.Time) {
	if now.Sub(d.swept) < d.idleBudget {
		return
	}
	d.swept = now
	for id, b := range d.budgets {
		if _, queued := d.queues[id]; !queued && !b.idle.IsZero() && now.Sub(b.idle) >= d.idleBudget {
			delete(d.budgets, id)
		}
	}
}

// start launches what q may run now; d.mu held.
func (d *Dispatcher) start(q *endpointQueue) {
	for len(q.jobs) > 0 && q.inflight < d.cfg.PerEndpoint {
		if !d.room() {
			if !q.waiting {
				q.waiting = true
				d.waiting = append(d.waiting, q)
			}
			return
		}
		if q.limiter != nil {
			if ok, delay := q.limiter.take(time.Now(), len(q.jobs)); !ok {
				if q.timer == nil {
					q.timer = time.AfterFunc(delay, func() {
						d.mu.Lock()
						defer d.mu.Unlock()
						q.timer = nil
						d.start(q)
					})
				}
				return
			}
		}
		j := q.jobs[0].Job
		q.jobs[0] = queued{}
		q.jobs = q.jobs[1:]
		d.queued--
		// An endpoint with a stale attempt in flight, or whose last
		// attempt finished stale, is slow now: its next attempts wait on
		// it, not on the CPU. (Its queue, and so that memory, goes when it
		// is empty.)
		fresh := !q.stale && !q.slow(d.expired)
		q.inflight++
		q.gens = append(q.gens, d.gen)
		d.inflight++
		if fresh {
			d.fresh++
			d.started[d.gen%ringTicks]++
		}
		d.wg.Add(1)
		if d.workers < d.inflight {
			d.workers++
			go d.worker()
		}
		if !d.adapting && d.cfg.MinWorkers < d.cfg.Workers && d.ctx.Err() == nil {
			d.adapting = true
			go d.adapt()
		}
		d.work <- task{q: q, j: j, gen: d.gen, fresh: fresh, at: time.Now()}
	}
}

// slow says whether q has an attempt in flight that started in interval
// expired or before (a stale one).
func (q *endpointQueue) slow(expired uint64) bool {
	for _, g := range q.gens {
		if g <= expired {
			return true
		}
	}
	return false
}

// finished forgets an attempt of q that started in gen.
func (q *endpointQueue) finished(gen uint64) {
	i := slices.Index(q.gens, gen)
	q.gens[i] = q.gens[len(q.gens)-1]
	q.gens = q.gens[:len(q.gens)-1]
}

// room says whether one more attempt may start; d.mu held.
func (d *Dispatcher) room() bool { return d.inflight < d.cfg.Workers && d.fresh < d.limit }

// startWaiting starts what the queues waiting on the cap or the limit may
// run now; d.mu held.
func (d *Dispatcher) startWaiting() {
	for len(d.waiting) > 0 && d.room() {
		w := d.waiting[0]
		d.waiting = d.waiting[1:]
		w.waiting = false
		d.start(w)
	}
	if len(d.waiting) == 0 && d.fresh < d.limit {
		d.slack = true
	}
}

// adapt runs every adaptEvery while there is work: attempts older than
// staleAfter stop counting against the limit, and each
// window (window) bound by the limit all through is shown to the climber.
// A window after one that moved the limit only lets the attempts started
// before the move finish: its completions still follow the old limit.
func (d *Dispatcher) adapt() {
	t := time.NewTicker(d.adaptEvery)
	defer t.Stop()
	d.mu.Lock()
	d.win = window{start: time.Now(), bound: true}
	d.mu.Unlock()
	for {
		var now time.Time
		select {
		case now = <-t.C:
		case <-d.ctx.Done():
			d.mu.Lock()
			d.adapting = false
			d.mu.Unlock()
			return
		}
		d.mu.Lock()
		d.tick(now)
		if d.inflight == 0 && d.queued == 0 {
			d.adapting = false
			d.climb.observe(0, false, false)
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
	}
}

// tick is one interval of adapt; d.mu held.
func (d *Dispatcher) tick(now time.Time) {
	d.gen++
	// An attempt is stale once more than staleAfter's intervals have
	// ended since the one it started in.
	stale := uint64(d.staleAfter()/d.adaptEvery) + 1
	for d.gen > stale && d.expired < d.gen-stale {
		d.expired++
		i := d.expired % ringTicks
		d.fresh -= d.started[i]
		d.started[i] = 0
	}
	d.win.bound = d.win.bound && !d.slack && len(d.waiting) > 0
	d.slack = false
	if now.Sub(d.win.start) >= d.win.length() {
		if d.win.settling {
			d.congested() // the next window's reading starts here
			d.win = window{start: now, bound: true}
		} else {
			if d.win.done > 0 {
				d.mean = d.win.took / time.Duration(d.win.done)
			}
			before := d.limit
			d.limit = d.climb.observe(float64(d.win.done)/now.Sub(d.win.start).Seconds(), d.win.bound, d.congested())
			d.win = window{start: now, bound: true, settling: d.limit != before}
		}
	}
	d.startWaiting()
}

// window is what the Dispatcher saw since its climber's last observation.
type window struct {
	start    time.Time
	done     int           // attempts finished
	took     time.Duration // their durations, summed
	bound    bool          // at every tick, work waited on the limit and it had no room
	settling bool          // the limit moved when it started
}

// maxWindow bounds a window whose attempts take long or never finish.
const maxWindow = time.Second

// length is how long the window lasts: twice the mean attempt it saw
// (attempts started at its start have mostly finished by then), at least
// minWindow and at most maxWindow.
func (w window) length() time.Duration {
	if w.done == 0 {
		return maxWindow
	}
	return min(maxWindow, max(minWindow, 2*w.took/time.Duration(w.done)))
}

// worker runs attempts until the dispatcher's context ends; by then wait
// has seen every queued attempt finish.
func (d *Dispatcher) worker() {
	for {
		select {
		case t := <-d.work:
			d.run(t)
		case <-d.ctx.Done():
			return
		}
	}
}

func (d *Dispatcher) run(t task) {
	defer d.wg.Done()
	q := t.q
	d.attempt(d.ctx, t.j)
	d.mu.Lock()
	defer d.mu.Unlock()
	q.inflight--
	q.finished(t.gen)
	d.inflight--
	if t.fresh && t.gen > d.expired {
		d.fresh--
		d.started[t.gen%ringTicks]--
	}
	// Found slow, an endpoint stays slow until its queue empties: its
	// attempts since then started not counting, and finish as they did.
	q.stale = t.gen <= d.expired || !t.fresh
	d.win.done++
	d.win.took += time.Since(t.at)
	d.start(q)
	d.startWaiting()
	if q.inflight == 0 && len(q.jobs) == 0 && q.timer == nil && !q.waiting {
		delete(d.queues, q.id)
		// Only a rate-limited endpoint's queue marks and sweeps budgets:
		// the others' attempts (most of them) read no clock here.
		if b, ok := d.budgets[q.id]; ok {
			b.idle = time.Now()
			d.budgets[q.id] = b
			d.sweepBudgets(b.idle)
		}
	}
}

// Workers is the most attempts in flight (DispatchConfig.Workers).
func (d *Dispatcher) Workers() int { return d.cfg.Workers }

// Limit is how many attempts may start at once now (climber).
func (d *Dispatcher) Limit() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.limit
}

// Room is how many more jobs the dispatcher should take so that at most
// limit are queued or running: the scheduler claims no more than that, so
// a replica never holds deliveries it cannot start soon while other
// replicas are idle.
func (d *Dispatcher) Room(limit int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return max(0, limit-d.queued-d.inflight)
}

// Backlog is how many jobs are queued and running, and how long the
// oldest queued job has waited.
func (d *Dispatcher) Backlog(now time.Time) (queued, inflight int, oldest time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.queued > 0 {
		for _, q := range d.queues {
			if len(q.jobs) > 0 {
				oldest = max(oldest, now.Sub(q.jobs[0].at))
			}
		}
	}
	return d.queued, d.inflight, oldest
}

// Wait blocks until every running attempt has finished.
func (d *Dispatcher) Wait() { d.wg.Wait() }
