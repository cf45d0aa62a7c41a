package attempt

// climber adapts how many attempts may start at once (the Dispatcher's
// limit) to what the replica and its endpoints give back: it moves the
// limit one step at a time and keeps moving the same way while that does
// not cost completions per second, so it settles at the fewest attempts in
// flight that deliver as much as more would (docs/architecture.md §18,
// docs/webhooks.md "How many attempts in flight").
//
// Against endpoints that answer at once the replica's CPU is the
// bottleneck: hundreds of attempts in flight deliver no more per second
// than a few dozen, and cost more CPU per delivery (connections and
// goroutines to schedule and scan). Against endpoints that take 100 ms,
// each step up adds deliveries per second, and the limit climbs to its
// maximum. Completions per second are the signal, not latency: endpoints
// answer in 1 ms or in 10 s, and no latency target fits them all.
//
// Completions per second alone climb too readily on a busy machine, where
// they move with much else than the limit (a burst of events arriving,
// Postgres flushing): while the Go scheduler is congested (schedLatency),
// as it is against fast endpoints long before the limit reaches Workers,
// a climb goes on only if its last step gave at least half of what the
// step could give. The congestion alone never holds the limit down: the
// replica may be busy with other work (recording a large fan-out) while
// its attempts wait on slow endpoints, and then every step up pays.
//
// It is a hill climber, as the .NET thread pool's: each observation of a
// bound interval (one where work waited on the limit all through)
// compares completions per second with the previous one. Rising one step
// that gave less than a third of the step more turns it down; falling one
// step that lost more than half of the step turns it up: on a flat curve
// it drifts down. It starts by doubling (as TCP's slow start
// does) until a step up does not pay, then moves by climbStep. Where a
// bound holds it (at min or max), it turns after probeEvery intervals, so
// a load that changes (endpoints slowing down) is found again; turning up
// from min, it doubles again.
//
// The Dispatcher shows it an interval only after the attempts started
// under the previous limit have had time to finish (Dispatcher.adapt):
// completions lag the limit by an attempt's duration.
type climber struct {
	min, max   int
	limit      float64
	up         bool    // the next move is up
	fast       bool    // moves up double the limit
	prev       float64 // completions per second of the previous bound interval; 0 none
	moved      bool    // the last move was a whole step
	step       float64 // its factor
	pinned     int     // bound intervals in a row the limit could not move a whole step
	probeEvery int
}

// climbStep is the factor of one move after the first doubling: four
// steps double the limit.
const climbStep = 1.2

// newClimber starts at lo, doubling, and keeps the limit within [lo, hi].
func newClimber(lo, hi int) *climber {
	hi = max(1, hi)
	lo = max(1, min(lo, hi))
	return &climber{min: lo, max: hi, limit: float64(lo), up: true, fast: true, probeEvery: 20}
}

// Limit is the current limit.
func (c *climber) Limit() int { return int(c.limit) }

// observe takes one interval's completions per second, whether work
// waited on the limit for all of it, and whether the replica's CPU was
// congested (goroutines waited long to run), and returns the new limit.
// An interval that was not bound says nothing about the limit: it is
// kept, and the next bound interval is compared with none. A congested
// interval asks more of a climb: more attempts in flight may only wait
// longer for the CPU.
func (c *climber) observe(rate float64, bound, congested bool) int {
	if !bound {
		c.prev, c.pinned = 0, 0
		return c.Limit()
	}
	if c.prev > 0 && c.moved {
		// Endpoints that are the bottleneck give back in proportion:
		// step times the completions. A gain of less than a third of
		// that is not worth the attempts (a flat curve's noise), nor one
		// of less than half while the CPU is congested; a loss of more
		// than half of it says the endpoints are the bottleneck.
		gain := rate/c.prev - 1
		switch {
		case c.up && (gain < (c.step-1)/3 || congested && gain < (c.step-1)/2):
			c.up, c.fast = false, false
		case !c.up && -gain > (1-c.step)/2:
			c.up = true
		}
	}
	c.prev = rate
	c.step = 1 / climbStep
	if c.up {
		c.step = climbStep
		if c.fast {
			c.step = 2
		}
	}
	want := c.limit * c.step
	next := min(float64(c.max), max(float64(c.min), want))
	// A move cut short by a bound is too small to compare by: keep the
	// direction and turn only after probeEvery such intervals.
	c.moved = next == want
	if c.moved {
		c.pinned = 0
	} else if c.pinned++; c.pinned >= c.probeEvery {
		c.pinned, c.prev = 0, 0
		c.up = !c.up
		c.fast = c.up
	}
	c.limit = next
	return c.Limit()
}
