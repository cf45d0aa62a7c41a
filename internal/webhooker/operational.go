package webhooker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/eventline/eventline/pkg/events"
)

// Operational event types: what the webhooker announces about endpoints
// and deliveries, appended to the stream like any event (creator system
// "webhooker", eventable {"webhook", endpoint id}, the endpoint's tenant);
// docs/webhooks.md "Operational events".
const (
	TypeDisabled         = "webhook.disabled"
	TypeAttemptFailing   = "webhook.attempt_failing"
	TypeAttemptExhausted = "webhook.attempt_exhausted"
	TypeRecovered        = "webhook.recovered"
)

// DefaultFailingAfter is how many consecutive failed attempts make an
// endpoint's streak announced as webhook.attempt_failing
// (WEBHOOK_FAILING_AFTER).
const DefaultFailingAfter = 3

// isOperational reports whether eventType is one the webhooker announces.
// Deliveries of such events never move an endpoint's failure tracker, so
// they never announce anything themselves: an endpoint subscribed to
// webhook.* that is down cannot make announcements of announcements
// (docs/webhooks.md "Operational events").
func isOperational(eventType string) bool {
	switch eventType {
	case TypeDisabled, TypeAttemptFailing, TypeAttemptExhausted, TypeRecovered:
		return true
	}
	return false
}

// trackedOutcomes are the outcomes of batch that move failure trackers:
// all but those of operational events' deliveries.
func trackedOutcomes(batch []Outcome) []Outcome {
	for i, o := range batch {
		if isOperational(o.Job.Event.Type) {
			out := append([]Outcome(nil), batch[:i]...)
			for _, o := range batch[i+1:] {
				if !isOperational(o.Job.Event.Type) {
					out = append(out, o)
				}
			}
			return out
		}
	}
	return batch
}

// exhausted reports whether o ran its delivery out of retries: a failure
// with no retry left, the endpoint neither gone (410 disables it, which is
// announced as webhook.disabled) nor disabled or deleted before the
// attempt (every delivery it had pending would be announced).
func (o Outcome) exhausted() bool {
	return !o.Succeeded && !o.Retry && !o.Gone && o.Attempt.ErrorClass != "disabled"
}

// notice is an operational event to append once the outcomes that caused
// it are committed.
type Notice struct {
	Type               string // TypeAttemptFailing, TypeAttemptExhausted or TypeRecovered
	Tenant, EndpointID string
	// since is the streak's first failure (attempt_failing, recovered).
	Since time.Time
	// failures is how many consecutive attempts failed (attempt_failing).
	Failures int
	// the delivery that ran out of retries (attempt_exhausted)
	DeliveryID, EventID, EventType string
	Attempts                       int
	// lastErrorClass is the class of the latest failed attempt
	// (attempt_failing, attempt_exhausted).
	LastErrorClass string
}

// id is the notice's event id, derived from what it announces (the
// streak's endpoint and first failure, or the delivery and its attempt),
// so a replayed outcome or another replica announcing the same thing
// appends the same id and the stream keeps one (its Nats-Msg-Id).
func (n Notice) ID() string {
	var key, prefix string
	switch n.Type {
	case TypeAttemptExhausted:
		prefix, key = "webhook-attempt-exhausted-", fmt.Sprintf("%s\x00%d", n.DeliveryID, n.Attempts)
	case TypeAttemptFailing:
		prefix, key = "webhook-attempt-failing-", fmt.Sprintf("%s\x00%d", n.EndpointID, n.Since.UnixMicro())
	default:
		prefix, key = "webhook-recovered-", fmt.Sprintf("%s\x00%d", n.EndpointID, n.Since.UnixMicro())
	}
	sum := sha256.Sum256([]byte(key))
	return prefix + hex.EncodeToString(sum[:16]) // at most 58 bytes (events.MaxIDLen)
}

// event is the notice as the event to append.
func (n Notice) Event() (events.Event, error) {
	var p any
	switch n.Type {
	case TypeAttemptFailing:
		p = struct {
			EndpointID     string    `json:"endpoint_id"`
			Failures       int       `json:"failures"`
			FailingSince   time.Time `json:"failing_since"`
			LastErrorClass string    `json:"last_error_class,omitempty"`
		}{n.EndpointID, n.Failures, n.Since.UTC(), n.LastErrorClass}
	case TypeAttemptExhausted:
		p = struct {
			EndpointID     string `json:"endpoint_id"`
			DeliveryID     string `json:"delivery_id"`
			EventID        string `json:"event_id"`
			EventType      string `json:"event_type"`
			Attempts       int    `json:"attempts"`
			LastErrorClass string `json:"last_error_class"`
		}{n.EndpointID, n.DeliveryID, n.EventID, n.EventType, n.Attempts, n.LastErrorClass}
	case TypeRecovered:
		p = struct {
			EndpointID   string    `json:"endpoint_id"`
			FailingSince time.Time `json:"failing_since"`
		}{n.EndpointID, n.Since.UTC()}
	default:
		return events.Event{}, fmt.Errorf("no operational event %q", n.Type)
	}
	particulars, err := json.Marshal(p)
	if err != nil {
		return events.Event{}, err
	}
	return events.Event{
		ID:          n.ID(),
		Tenant:      n.Tenant,
		Action:      n.Type[len("webhook."):],
		Eventable:   events.Ref{Type: "webhook", ID: n.EndpointID},
		Creator:     events.Ref{Type: events.SystemCreator, ID: "webhooker"},
		Particulars: particulars,
	}, nil
}

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
	ledger *Ledger  // remembers what was announced
	pub    appender // nil: notices are only logged
	log    *slog.Logger
	in     chan Notice
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

func newAnnouncer(l *Ledger, pub appender, log *slog.Logger) *announcer {
	ctx, stop := context.WithCancel(context.Background())
	return &announcer{ledger: l, pub: pub, log: log, in: make(chan Notice, 4096), done: make(chan struct{}), ctx: ctx, stop: stop,
		appended: map[string]int{}}
}

// notify queues n without blocking.
func (a *announcer) notify(n Notice) {
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

func (a *announcer) append(n Notice) {
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
	case TypeAttemptFailing:
		err = a.ledger.MarkFailingAnnounced(ctx, n.EndpointID, n.Since)
	case TypeRecovered:
		err = a.ledger.MarkRecoveryAnnounced(ctx, n.EndpointID, n.Since)
	}
	if err != nil {
		log.ErrorContext(ctx, "remember the announced failing streak; the next outcome of the endpoint announces it again (same event id)", "error", err)
	}
}
