package ingest

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter enforces each API key's rate limit in events per second
// (docs/contract.md §2 "Ingest"). A key limited to N events/s has a burst
// of N: it may send N events at once, then N per second. A request takes
// as many tokens as it has events, so a batch counts every event, and a
// batch larger than the burst can never fit: it is refused with a message
// to split it. An invalid request takes one token, so malformed traffic is
// limited too. Limits are per ingest replica.
type limiter struct {
	def int // events per second for keys without their own limit

	mu   sync.Mutex
	keys map[string]*keyLimiter
}

type keyLimiter struct {
	perSecond int
	l         *rate.Limiter
}

// verdict is what the limiter decided for a request.
type verdict struct {
	ok      bool
	wait    time.Duration // until the request would fit (when !ok and !tooBig)
	tooBig  bool          // more events than the key's burst: it never fits
	burst   int
	limited bool // the key has a limit at all
}

func newLimiter(def int) *limiter {
	return &limiter{def: def, keys: map[string]*keyLimiter{}}
}

// take takes n events from the key's budget, or says why it cannot.
func (l *limiter) take(keyID string, keyLimit, n int, now time.Time) verdict {
	perSecond := keyLimit
	if perSecond <= 0 {
		perSecond = l.def
	}
	if perSecond <= 0 {
		return verdict{ok: true} // unlimited
	}
	l.mu.Lock()
	kl, ok := l.keys[keyID]
	if !ok || kl.perSecond != perSecond {
		kl = &keyLimiter{perSecond: perSecond, l: rate.NewLimiter(rate.Limit(perSecond), perSecond)}
		l.keys[keyID] = kl
	}
	l.mu.Unlock()
	v := verdict{burst: perSecond, limited: true}
	if n > perSecond {
		v.tooBig = true
		return v
	}
	r := kl.l.ReserveN(now, n)
	if !r.OK() {
		v.tooBig = true
		return v
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		v.wait = time.Duration(math.Ceil(d.Seconds())) * time.Second
		return v
	}
	v.ok = true
	return v
}
