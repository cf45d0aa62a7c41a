package attempt

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// budget is an endpoint's rate limit as the dispatcher sees it: take
// reports whether one more attempt may start now, and if not, when to ask
// again. It never blocks.
type budget interface {
	take(now time.Time, want int) (ok bool, retry time.Duration)
}

// localBudget limits one replica on its own (a token bucket with a tenth
// of a second of burst).
type localBudget struct{ l *rate.Limiter }

func newLocalBudget(perSec int) localBudget {
	return localBudget{rate.NewLimiter(rate.Limit(perSec), max(1, perSec/10))}
}

func (b localBudget) take(now time.Time, _ int) (bool, time.Duration) {
	r := b.l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// slots cuts a rate limit into time slots that each allow a tenth of it
// (at least one delivery): any second then overlaps at most eleven slots,
// so replicas sharing the slots' budgets send at most 1.1× the limit in
// any second, and a rate of 15/s is 1 per 66.7 ms, not 1 per 100 ms.
func slots(perSec int) (width time.Duration, per int) {
	per = max(1, perSec/10)
	return time.Duration(per) * time.Second / time.Duration(perSec), per
}

// RateWindows is the shared store of slot budgets (Postgres,
// webhook.rate_windows): Take takes up to want of a slot's per and
// returns how many it got.
type RateWindows interface {
	Take(ctx context.Context, endpointID string, width time.Duration, slot int64, want, per int) (int, error)
}

// sharedBudget limits every replica together: each slot's budget is taken
// from RateWindows, as many as the queue wants, by one request at a time.
type sharedBudget struct {
	ctx      context.Context
	windows  RateWindows
	endpoint string
	width    time.Duration
	per      int

	mu     sync.Mutex
	slot   int64 // the slot tokens belong to; 0 before the first grant
	tokens int
	asking bool
}

func newSharedBudget(ctx context.Context, w RateWindows, endpointID string, perSec int) *sharedBudget {
	width, per := slots(perSec)
	return &sharedBudget{ctx: ctx, windows: w, endpoint: endpointID, width: width, per: per}
}

// askAgain is how soon a queue looks again while its grant is on the way.
const askAgain = 2 * time.Millisecond

func (b *sharedBudget) take(now time.Time, want int) (bool, time.Duration) {
	slot := now.UnixNano() / int64(b.width)
	next := time.Duration((slot+1)*int64(b.width) - now.UnixNano())
	b.mu.Lock()
	defer b.mu.Unlock()
	if slot == b.slot {
		if b.tokens > 0 {
			b.tokens--
			return true, 0
		}
		return false, next // this slot's share is spent
	}
	if !b.asking {
		b.asking = true
		go b.ask(slot, min(max(1, want), b.per))
	}
	return false, min(askAgain, next)
}

func (b *sharedBudget) ask(slot int64, want int) {
	n, err := b.windows.Take(b.ctx, b.endpoint, b.width, slot, want, b.per)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.asking = false
	if err != nil {
		return // asked again on the next take: nothing is sent meanwhile
	}
	b.slot, b.tokens = slot, n
}
