package ingest

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter enforces each API key's rate limit in events per second, with a
// burst of one second's worth (at least one full batch). Limits are per
// ingest replica.
type limiter struct {
	def int // events per second for keys without their own limit

	mu   sync.Mutex
	keys map[string]*keyLimiter
}

type keyLimiter struct {
	perSecond int
	l         *rate.Limiter
}

func newLimiter(def int) *limiter {
	return &limiter{def: def, keys: map[string]*keyLimiter{}}
}

// allow takes n events from the key's budget, or returns how long until
// they would fit.
func (l *limiter) allow(keyID string, keyLimit, n int, now time.Time) (bool, time.Duration) {
	perSecond := keyLimit
	if perSecond <= 0 {
		perSecond = l.def
	}
	if perSecond <= 0 {
		return true, 0 // unlimited
	}
	l.mu.Lock()
	kl, ok := l.keys[keyID]
	if !ok || kl.perSecond != perSecond {
		burst := max(perSecond, 1000)
		kl = &keyLimiter{perSecond: perSecond, l: rate.NewLimiter(rate.Limit(perSecond), burst)}
		l.keys[keyID] = kl
	}
	l.mu.Unlock()
	r := kl.l.ReserveN(now, n)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, time.Duration(math.Ceil(d.Seconds())) * time.Second
	}
	return true, 0
}
