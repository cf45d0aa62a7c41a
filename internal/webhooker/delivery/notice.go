package delivery

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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

// Notice is an operational event to append once the outcomes that caused
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

// ID is the notice's event id, derived from what it announces (the
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

// Event is the notice as the event to append.
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
