package notifier

import (
	"context"
	"testing"
	"time"
)

// TestLingerLeft: a batch that is not full waits until the linger has
// passed since its oldest message arrived; a full one, or one whose
// oldest message waited long enough already, starts at once.
func TestLingerLeft(t *testing.T) {
	now := time.Now()
	at := func(ago ...time.Duration) []*item {
		var items []*item
		for _, a := range ago {
			items = append(items, &item{received: now.Add(-a)})
		}
		return items
	}
	const ms = time.Millisecond
	for _, c := range []struct {
		name   string
		items  []*item
		n      int
		linger time.Duration
		want   time.Duration
	}{
		{"one fresh message", at(0), 500, 5 * ms, 5 * ms},
		{"from the oldest message", at(1*ms, 3*ms, 2*ms), 500, 5 * ms, 2 * ms},
		{"lingered enough", at(6*ms, 1*ms), 500, 5 * ms, 0},
		{"full", at(0, 0), 2, 5 * ms, 0},
		{"no linger", at(0), 500, -1, 0},
	} {
		if got := lingerLeft(c.items, c.n, c.linger, now); got != c.want {
			t.Errorf("%s: lingerLeft = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestLoopLingersBeforeAPartialBatch: with no batch running, a message
// that just arrived does not start a transaction of its own; the loop
// arms its linger timer instead.
func TestLoopLingersBeforeAPartialBatch(t *testing.T) {
	c := &orderedConsumer{cfg: Config{Linger: time.Hour}.withDefaults()}
	l := newLoop(c, 0)
	l.linger.Stop()
	l.held[1] = &item{seq: 1, received: time.Now()}
	l.pending = 1
	l.start(context.Background()) // a batch started here would run with no pool and panic
	if len(l.running) != 0 || l.cursor != 1 || l.pending != 1 {
		t.Fatalf("a batch started: running %d, cursor %d, pending %d", len(l.running), l.cursor, l.pending)
	}
	if !l.linger.Stop() {
		t.Fatal("the linger timer is not armed")
	}
}
