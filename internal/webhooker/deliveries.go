package webhooker

import (
	"time"

	"github.com/google/uuid"

	"github.com/eventline/eventline/pkg/events"
)

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

// job is a delivery ready for its next attempt.
type Job struct {
	DeliveryID string
	Tenant     string
	EndpointID string
	Event      events.Event // Seq set; body built from it
	Attempt    int          // 1-based number of the attempt to make
	// body is the event's JSON, shared by every job of one event (one
	// encoding for a thousand endpoints); nil to encode on attempt.
	Body []byte
	// scheduled: taken from webhook.due (a retry, a replay, an expired
	// claim), whose row goes once the delivery is finished.
	Scheduled bool
	// claim is the webhook.claims row that lists the delivery while this
	// replica holds it (recorded claimed); 0: none (leases).
	Claim int64
}

// newID returns a time-ordered id (UUIDv7) for endpoints and deliveries.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }
