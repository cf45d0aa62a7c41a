package events

import (
	"encoding/json"
	"time"
)

// Event is one thing that happened: "card c42 was closed by user u7 on board
// b1". It is the single record that drives timelines, notifications and
// webhooks.
//
// On input, ID, OccurredAt and Particulars are optional; RecordedAt, Type and
// Seq are set by the system and rejected by Decode. Normalize fills in the
// defaults. MarshalInput writes the input form (the body of a stream
// message); MarshalJSON writes the stored form that reads and deliveries
// carry, system fields included.
type Event struct {
	// ID identifies the event. Optional on input (^[A-Za-z0-9_-]{1,64}$); a
	// client-chosen id makes the append idempotent. Absent: a UUIDv7.
	ID string `json:"id"`
	// Tenant owns the event. On HTTP ingest it comes from the API key.
	Tenant string `json:"tenant"`
	// Action is what happened to the eventable, e.g. "closed".
	Action string `json:"action"`
	// Eventable is the thing the event is about.
	Eventable Ref `json:"eventable"`
	// Creator is who did it; system actions use {"type":"system"}.
	Creator Ref `json:"creator"`
	// Parents are the containers the event also belongs to, nearest first.
	Parents []Ref `json:"parents"`
	// Particulars is a free JSON object of details; "{}" when empty.
	Particulars json.RawMessage `json:"particulars"`
	// OccurredAt is when it happened; defaults to the receive time.
	OccurredAt time.Time `json:"occurred_at"`
	// RecordedAt is when eventline received it. Set by the system.
	RecordedAt time.Time `json:"recorded_at"`
	// Type is "<eventable.type>.<action>". Set by the system.
	Type string `json:"type"`
	// Seq is the JetStream stream sequence. Set by the system on reads and
	// deliveries; it is not part of the message body on the stream.
	Seq uint64 `json:"seq,omitempty"`

	// Traceparent is transport metadata, never part of the event JSON: the
	// W3C trace context of the request that recorded the event, carried in
	// the stream message's "traceparent" header when set.
	Traceparent string `json:"-"`
}

// Ref points at a typed object: {"type": "card", "id": "c42"}.
type Ref struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// SystemCreator is the creator type of events recorded by eventline itself
// or by other automated actors.
const SystemCreator = "system"

// TypeOf returns the event type "<eventable type>.<action>".
func TypeOf(eventableType, action string) string {
	return eventableType + "." + action
}

// MarshalJSON writes the event in its stored form, as reads, webhook
// deliveries and notifications carry it (docs/schema/event.schema.json):
// the input form (MarshalInput) plus recorded_at, type and seq, timestamps
// in UTC with RFC 3339 nano precision, seq omitted when 0.
func (e Event) MarshalJSON() ([]byte, error) {
	if b, ok := AppendStored(make([]byte, 0, inputSizeHint(&e)+96), &e); ok {
		return b, nil
	}
	return e.marshalStoredJSON()
}

// marshalStoredJSON is MarshalJSON by encoding/json.
func (e Event) marshalStoredJSON() ([]byte, error) {
	type stored struct {
		// id and tenant are always written; they shadow the input form's.
		ID     string `json:"id"`
		Tenant string `json:"tenant"`
		inputForm
		RecordedAt string `json:"recorded_at,omitempty"`
		Type       string `json:"type"`
		Seq        uint64 `json:"seq,omitempty"`
	}
	return json.Marshal(stored{ID: e.ID, Tenant: e.Tenant, inputForm: e.inputForm(),
		RecordedAt: formatTime(e.RecordedAt), Type: e.Type, Seq: e.Seq})
}

// MarshalInput writes the event in its input form: the JSON a producer
// sends to POST /v1/events, which is also the body of its message on the
// EVENTS stream. It has id, tenant, action, eventable, creator, parents
// ([] when empty), particulars ({} when empty) and occurred_at (omitted
// when zero), and none of the fields eventline derives from the stream
// message (recorded_at, type, seq).
func (e Event) MarshalInput() ([]byte, error) {
	// The stream body of every ingested event: written without reflection
	// when nothing in it needs escaping (appendInput), which is what the
	// group commit spends most of its CPU on otherwise.
	if b, ok := appendInput(make([]byte, 0, inputSizeHint(&e)), &e); ok {
		return b, nil
	}
	return e.marshalInputJSON()
}

// inputSizeHint is about the length of e's input form, so appendInput
// writes it into one allocation.
func inputSizeHint(e *Event) int {
	n := 160 + len(e.ID) + len(e.Tenant) + len(e.Action) + len(e.Eventable.Type) + len(e.Eventable.ID) +
		len(e.Creator.Type) + len(e.Creator.ID) + len(e.Particulars)
	for _, p := range e.Parents {
		n += 24 + len(p.Type) + len(p.ID)
	}
	return n
}

// inputForm is the JSON of MarshalInput.
type inputForm struct {
	ID          string          `json:"id,omitempty"`
	Tenant      string          `json:"tenant,omitempty"`
	Action      string          `json:"action"`
	Eventable   Ref             `json:"eventable"`
	Creator     Ref             `json:"creator"`
	Parents     []Ref           `json:"parents"`
	Particulars json.RawMessage `json:"particulars"`
	OccurredAt  string          `json:"occurred_at,omitempty"`
}

func (e Event) inputForm() inputForm {
	in := inputForm{
		ID: e.ID, Tenant: e.Tenant, Action: e.Action,
		Eventable: e.Eventable, Creator: e.Creator,
		Parents: e.Parents, Particulars: e.Particulars,
		OccurredAt: formatTime(e.OccurredAt),
	}
	if in.Parents == nil {
		in.Parents = []Ref{}
	}
	if len(in.Particulars) == 0 {
		in.Particulars = json.RawMessage("{}")
	}
	return in
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
