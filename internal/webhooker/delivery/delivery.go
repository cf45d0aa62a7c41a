// Package delivery is the webhook delivery log and the rules that move
// it: the Delivery, Attempt, Job and Outcome types and a delivery's
// Status; the Ledger, the only code that writes webhook.deliveries,
// webhook.attempts, webhook.due, webhook.claims, webhook.chunks and the
// endpoints' failure trackers, and that lists the log; the chunks of
// shared fan-outs (Chunk); the retry schedule (NextAttempt); the
// rule that disables an endpoint that keeps failing (DisableRule); and the
// operational events committed outcomes announce (Notice). It starts
// nothing and sends nothing: package webhooker decides when to write and
// acts on what the ledger returns (../doc.go).
package delivery

import (
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/eventline/eventline/pkg/events"
)

// ErrNotFound means no such delivery for the tenant.
var ErrNotFound = errors.New("not found")

// Delivery is one event sent to one endpoint, with all its attempts.
type Delivery struct {
	ID            string     `json:"id"`
	EndpointID    string     `json:"endpoint_id"`
	EventID       string     `json:"event_id"`
	EventSeq      uint64     `json:"event_seq"`
	EventType     string     `json:"event_type"`
	Status        Status     `json:"status"`
	Attempts      []Attempt  `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	CreatedAt     time.Time  `json:"created_at"`

	n int // attempts made
}

// Attempt is one HTTP try of a delivery.
type Attempt struct {
	N          int       `json:"n"`
	At         time.Time `json:"at"`
	DurationMS int       `json:"duration_ms"`
	StatusCode int       `json:"status_code,omitempty"`
	ErrorClass string    `json:"error_class,omitempty"`
	Error      string    `json:"error,omitempty"`
	Response   string    `json:"response,omitempty"`
}

// Job is a delivery ready for its next attempt.
type Job struct {
	DeliveryID string
	Tenant     string
	EndpointID string
	Event      events.Event // Seq set; body built from it
	Attempt    int          // 1-based number of the attempt to make
	// Body is the event's JSON, shared by every job of one event (one
	// encoding for a thousand endpoints); nil to encode on attempt.
	Body []byte
	// Scheduled: taken from webhook.due (a retry, a replay, an expired
	// claim), whose row goes once the delivery is finished.
	Scheduled bool
	// Claim is the webhook.claims row that lists the delivery while this
	// replica holds it (recorded claimed); 0: none (leases).
	Claim int64
}

// NewID returns a time-ordered id (UUIDv7) for deliveries, and the other ids
// the webhooker makes (test events, replicas).
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// Status is where a delivery stands (docs/contract.md §2 "Webhooks").
type Status string

const (
	StatusPending   Status = "pending"   // its next attempt is due, claimed or running
	StatusSucceeded Status = "succeeded" // an attempt got a 2xx
	StatusFailed    Status = "failed"    // out of retries (or its endpoint is gone); retryable by hand
)

// Status is the delivery's status after the outcome.
func (o Outcome) Status() Status {
	switch {
	case o.Succeeded:
		return StatusSucceeded
	case o.Retry:
		return StatusPending
	}
	return StatusFailed
}

// Outcome is the result of one attempt, to be logged.
type Outcome struct {
	Job        Job
	Attempt    Attempt
	Succeeded  bool
	Gone       bool          // 410: disable the endpoint
	RetryIn    time.Duration // when !succeeded and retry: wait before the next attempt
	Retry      bool
	FinishedAt time.Time
}
