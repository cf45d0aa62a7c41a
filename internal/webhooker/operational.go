package webhooker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/pkg/events"
)

// appender appends one event (events.Publisher).
type appender interface {
	Append(ctx context.Context, e events.Event) (events.Result, error)
}

// announcer appends notices on a goroutine of its own, so a slow or
// unreachable stream never holds up the writing of outcomes: a notice that
// finds the queue full or cannot be appended is logged and dropped. The
// endpoint's announced streak (webhook.endpoints.failing_announced) moves
// only after its event was appended, so the next outcome of the endpoint
// announces a dropped attempt_failing or recovered again, under the same
// event id.
type announcer struct {
	ledger *delivery.Ledger // remembers what was announced
	pub    appender         // nil: notices are only logged
	log    *slog.Logger
	in     chan delivery.Notice
	done   chan struct{}
	// stop cancels the appends still queued when close has waited
	// appendTimeout: shutdown is not held up by an unreachable stream.
	ctx  context.Context
	stop context.CancelFunc

	mu sync.Mutex
	// appended counts, by event type, the appends the stream took,
	// de-duplicated ones included (tests: announced once means appended
	// once, whatever the stream's de-duplication window).
	appended map[string]int
}

func newAnnouncer(l *delivery.Ledger, pub appender, log *slog.Logger) *announcer {
	ctx, stop := context.WithCancel(context.Background())
	return &announcer{ledger: l, pub: pub, log: log, in: make(chan delivery.Notice, 4096), done: make(chan struct{}), ctx: ctx, stop: stop,
		appended: map[string]int{}}
}

// notify queues n without blocking.
func (a *announcer) notify(n delivery.Notice) {
	select {
	case a.in <- n:
	default:
		a.log.Error("operational webhook event dropped: the queue is full", "type", n.Type, "endpoint_id", n.EndpointID, "event_id", n.ID())
	}
}

// run appends queued notices until close is called and the queue is drained.
func (a *announcer) run() {
	defer close(a.done)
	for n := range a.in {
		a.append(n)
	}
}

// close stops run once the queued notices are appended, or after
// appendTimeout with the rest logged as not appended.
func (a *announcer) close() {
	close(a.in)
	t := time.AfterFunc(appendTimeout, a.stop)
	<-a.done
	t.Stop()
	a.stop()
}

// appendTimeout bounds one append and its bookkeeping.
const appendTimeout = 5 * time.Second

func (a *announcer) append(n delivery.Notice) {
	ctx, cancel := context.WithTimeout(a.ctx, appendTimeout)
	defer cancel()
	log := a.log.With("type", n.Type, "tenant", n.Tenant, "endpoint_id", n.EndpointID)
	ev, err := n.Event()
	if err != nil {
		log.ErrorContext(ctx, "build operational webhook event", "error", err)
		return
	}
	log.InfoContext(ctx, "operational webhook event", "event_id", ev.ID)
	if a.pub == nil {
		return
	}
	if _, err := a.pub.Append(ctx, ev); err != nil {
		log.ErrorContext(ctx, "append operational webhook event; the next outcome of the endpoint announces it again", "event_id", ev.ID, "error", err)
		return
	}
	a.mu.Lock()
	a.appended[n.Type]++
	a.mu.Unlock()
	switch n.Type {
	case delivery.TypeAttemptFailing:
		err = a.ledger.MarkFailingAnnounced(ctx, n.EndpointID, n.Since)
	case delivery.TypeRecovered:
		err = a.ledger.MarkRecoveryAnnounced(ctx, n.EndpointID, n.Since)
	}
	if err != nil {
		log.ErrorContext(ctx, "remember the announced failing streak; the next outcome of the endpoint announces it again (same event id)", "error", err)
	}
}
