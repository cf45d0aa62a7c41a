package attempt

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/webhooker/delivery"
)

// climb feeds c n bound intervals whose completions per second are
// rate(limit) with ±noise, and returns the limits it chose.
func climb(c *climber, n int, noise float64, rng *rand.Rand, rate func(limit int) float64) []int {
	out := make([]int, n)
	for i := range out {
		r := rate(c.Limit()) * (1 + noise*(2*rng.Float64()-1))
		out[i] = c.observe(r, true, false)
	}
	return out
}

func mean(xs []int) float64 {
	s := 0
	for _, x := range xs {
		s += x
	}
	return float64(s) / float64(len(xs))
}

// TestClimberSettlesAtTheKnee: where more attempts in flight stop giving
// more completions per second (the replica's CPU is the bottleneck), the
// limit stays near that point, not at the maximum; where every attempt
// more gives more (slow endpoints), it climbs to the maximum and stays.
func TestClimberSettlesAtTheKnee(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, knee := range []int{16, 40, 100, 512} {
		t.Run(fmt.Sprint(knee), func(t *testing.T) {
			c := newClimber(16, 512)
			limits := climb(c, 400, 0.03, rng, func(l int) float64 { return float64(min(l, knee)) * 1000 })
			settled := mean(limits[200:])
			require.GreaterOrEqual(t, settled, 0.8*float64(knee), "limits %v", limits[200:])
			if knee < 512 {
				require.LessOrEqual(t, settled, 1.6*float64(knee)+2, "limits %v", limits[200:])
			}
		})
	}
}

// TestClimberClimbsFast: from its minimum, the limit reaches the maximum
// within a second and a half of 50 ms intervals when every step up pays.
func TestClimberClimbsFast(t *testing.T) {
	t.Parallel()
	c := newClimber(16, 512)
	limits := climb(c, 30, 0, rand.New(rand.NewPCG(3, 4)), func(l int) float64 { return float64(l) * 10 })
	require.Equal(t, 512, limits[len(limits)-1], "limits %v", limits)
}

// TestClimberFindsAChangedLoad: a limit held at its minimum by a flat
// load probes upwards, so it climbs again once the endpoints slow down
// (each attempt in flight then adds deliveries).
func TestClimberFindsAChangedLoad(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	c := newClimber(16, 512)
	climb(c, 200, 0.03, rng, func(int) float64 { return 20_000 })
	require.Less(t, c.Limit(), 40, "a flat load keeps the limit low")
	limits := climb(c, 200, 0.03, rng, func(l int) float64 { return float64(l) * 10 })
	require.GreaterOrEqual(t, mean(limits[150:]), 400.0, "limits %v", limits)
}

// TestClimberCongested: a climb whose steps pay only part of what they
// could (completions rising with the square root of the limit, as on a
// busy machine whose other work moves them) goes on to the maximum while
// the Go scheduler keeps up and stops near the minimum while it is
// congested; one whose steps pay in full (slow endpoints) goes on to the
// maximum either way.
func TestClimberCongested(t *testing.T) {
	t.Parallel()
	part := func(l int) float64 { return 1000 * math.Sqrt(float64(l)) }
	full := func(l int) float64 { return 10 * float64(l) }
	for _, tc := range []struct {
		name      string
		rate      func(int) float64
		congested bool
		lo, hi    float64
	}{
		{"part", part, false, 400, 512},
		{"part, congested", part, true, 16, 40},
		{"full, congested", full, true, 400, 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClimber(16, 512)
			limits := make([]int, 200)
			for i := range limits {
				limits[i] = c.observe(tc.rate(c.Limit()), true, tc.congested)
			}
			settled := mean(limits[100:])
			require.True(t, settled >= tc.lo && settled <= tc.hi, "mean limit %.0f, want [%.0f, %.0f]; limits %v", settled, tc.lo, tc.hi, limits)
		})
	}
}

// TestClimberKeepsItsLimitWhenNotBound: an interval in which nothing
// waited on the limit moves nothing.
func TestClimberKeepsItsLimitWhenNotBound(t *testing.T) {
	t.Parallel()
	c := newClimber(16, 512)
	climb(c, 10, 0, rand.New(rand.NewPCG(7, 8)), func(l int) float64 { return float64(l) * 10 })
	before := c.Limit()
	for range 50 {
		require.Equal(t, before, c.observe(5, false, false))
	}
}

// TestDispatcherLimitClimbsForSlowEndpoints: attempts that each wait on
// their endpoint (not on the CPU) make the limit climb from MinWorkers
// towards Workers, and every job runs.
func TestDispatcherLimitClimbsForSlowEndpoints(t *testing.T) {
	t.Parallel()
	var ran, inFlight, most atomic.Int64
	d := NewDispatcher(context.Background(), DispatchConfig{Workers: 256, MinWorkers: 4, PerEndpoint: 4}, func(context.Context, delivery.Job) {
		n := inFlight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(5 * time.Millisecond)
		inFlight.Add(-1)
		ran.Add(1)
	}, func(string) int { return 0 })
	d.adaptEvery = 10 * time.Millisecond
	d.congested = func() bool { return false } // the test's own CPU is not what it measures
	const n = 20_000
	jobs := make([]delivery.Job, n)
	for i := range jobs {
		jobs[i] = delivery.Job{DeliveryID: delivery.NewID(), EndpointID: fmt.Sprint("ep", i%1000)}
	}
	require.Empty(t, d.Submit(jobs...))
	d.Wait()
	require.EqualValues(t, n, ran.Load())
	require.Greater(t, most.Load(), int64(100), "attempts in flight at most; the limit started at 4")
}

// TestDispatcherSlowAttemptsLeaveTheLimit: attempts stuck on a slow
// endpoint stop counting against the limit after staleAfter, and while
// one is stuck, or when the endpoint's last attempt finished stale, its
// next attempts never count, so slow endpoints cannot take the limit from
// the endpoints that answer, even with the limit held at its minimum (as
// a load with nothing to gain from more attempts in flight leaves it).
// The test drives the intervals (tick) itself.
func TestDispatcherSlowAttemptsLeaveTheLimit(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var fast, slowStarted atomic.Int64
	// MinWorkers = Workers: no adapt goroutine; the test holds the limit
	// at 4.
	d := NewDispatcher(context.Background(), DispatchConfig{Workers: 64, MinWorkers: 64, PerEndpoint: 8}, func(_ context.Context, j delivery.Job) {
		if j.EndpointID == "slow" {
			slowStarted.Add(1)
			<-release
			return
		}
		fast.Add(1)
	}, func(string) int { return 0 })
	d.mu.Lock()
	d.climb = newClimber(4, 4)
	d.limit = d.climb.Limit()
	d.mu.Unlock()
	state := func() (fresh, inflight int) {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.fresh, d.inflight
	}
	stale := func() {
		d.mu.Lock()
		ticks := int(d.staleAfter()/d.adaptEvery) + 1
		for range ticks {
			d.tick(time.Now())
		}
		d.mu.Unlock()
	}
	submitFast := func() {
		for i := range 100 {
			d.Submit(delivery.Job{DeliveryID: delivery.NewID(), EndpointID: fmt.Sprint("ep", i%10)})
		}
	}

	for range 8 {
		d.Submit(delivery.Job{DeliveryID: delivery.NewID(), EndpointID: "slow"})
	}
	require.Eventually(t, func() bool { return slowStarted.Load() == 4 }, 5*time.Second, time.Millisecond, "the slow endpoint's first 4 attempts start")
	fresh, inflight := state()
	require.Equal(t, 4, fresh, "the first 4 attempts to the slow endpoint take the limit")
	require.Equal(t, 4, inflight)
	submitFast()
	_, inflight = state()
	require.Equal(t, 4, inflight, "nothing else starts while they are fresh")

	// Stale now: they leave the limit, the slow endpoint's other 4
	// attempts start without taking it, and the answering endpoints run.
	stale()
	require.Eventually(t, func() bool { return slowStarted.Load() == 8 }, 5*time.Second, time.Millisecond, "the slow endpoint's other 4 attempts start")
	require.Eventually(t, func() bool { return fast.Load() == 100 }, 5*time.Second, time.Millisecond,
		"the answering endpoints' 100 attempts run while 8 attempts hang on the slow one")
	require.Eventually(t, func() bool { _, n := state(); return n == 8 }, 5*time.Second, time.Millisecond,
		"the answering endpoints' attempts finish; the slow endpoint's 8 hang")
	fresh, _ = state()
	require.Equal(t, 0, fresh, "none of the slow endpoint's attempts counts against the limit")

	// 8 more wait behind them; the 8 finish stale and the next 8 start
	// with none stale in flight, yet none of them counts: the endpoint's
	// last attempt was slow.
	for range 8 {
		d.Submit(delivery.Job{DeliveryID: delivery.NewID(), EndpointID: "slow"})
	}
	for range 8 {
		release <- struct{}{}
	}
	require.Eventually(t, func() bool { return slowStarted.Load() == 16 }, 5*time.Second, time.Millisecond, "the slow endpoint's next 8 attempts start")
	require.Eventually(t, func() bool { _, n := state(); return n == 8 }, 5*time.Second, time.Millisecond)
	fresh, _ = state()
	require.Equal(t, 0, fresh, "an endpoint whose last attempt finished stale takes no place of the limit")
	submitFast()
	require.Eventually(t, func() bool { return fast.Load() == 200 }, 5*time.Second, time.Millisecond,
		"the answering endpoints have the whole limit")
	close(release)
	d.Wait()
}

// TestDispatcherStaleAfterFollowsTheMeanAttempt: when every attempt
// takes long (far endpoints, or a saturated CPU), an attempt is not an
// outlier and keeps counting against the limit for eight mean attempts.
func TestDispatcherStaleAfterFollowsTheMeanAttempt(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	d := NewDispatcher(context.Background(), DispatchConfig{Workers: 64, MinWorkers: 64}, func(context.Context, delivery.Job) { <-release }, func(string) int { return 0 })
	d.mu.Lock()
	d.mean = 100 * time.Millisecond // 800 ms: 40 intervals of 20 ms
	d.mu.Unlock()
	for i := range 4 {
		d.Submit(delivery.Job{DeliveryID: delivery.NewID(), EndpointID: fmt.Sprint("ep", i)})
	}
	fresh := func() int {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.fresh
	}
	require.Eventually(t, func() bool { return fresh() == 4 }, 5*time.Second, time.Millisecond)
	tick := func(n int) {
		d.mu.Lock()
		defer d.mu.Unlock()
		for range n {
			d.win.start = time.Now() // no window ends: the mean stays
			d.tick(time.Now())
		}
	}
	tick(40)
	require.Equal(t, 4, fresh(), "fresh through 40 intervals")
	tick(1)
	require.Equal(t, 0, fresh(), "stale after 41")
	close(release)
	d.Wait()
}

// TestDispatcherFixedLimit: MinWorkers equal to Workers keeps the limit
// at Workers, which attempts in flight reach.
func TestDispatcherFixedLimit(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var started atomic.Int64
	d := NewDispatcher(context.Background(), DispatchConfig{Workers: 32, MinWorkers: 32, PerEndpoint: 1}, func(context.Context, delivery.Job) {
		started.Add(1)
		<-release
	}, func(string) int { return 0 })
	for i := range 64 {
		d.Submit(delivery.Job{DeliveryID: delivery.NewID(), EndpointID: fmt.Sprint("ep", i)})
	}
	require.Eventually(t, func() bool { return started.Load() == 32 }, 5*time.Second, time.Millisecond)
	require.Equal(t, 32, d.Limit())
	close(release)
	d.Wait()
	require.EqualValues(t, 64, started.Load())
}
