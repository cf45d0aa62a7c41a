package events

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
)

// Message is one message of the EVENTS stream as a consumer reads it: what
// ParseStored needs to turn it into an Event.
type Message struct {
	// Subject is the subject it was published on:
	// events.<tenant>.<eventable type>.<action>.
	Subject string
	// Data is the body: one event in its input form (MarshalInput).
	Data []byte
	// Header holds the message headers; ParseStored reads Nats-Msg-Id and
	// traceparent. Nil when there are none.
	Header nats.Header
	// Seq is the stream sequence; it must not be 0.
	Seq uint64
	// Timestamp is when the stream stored the message. The zero time is
	// accepted only for a legacy body that carries recorded_at (dead
	// letters kept before eventline recorded stream timestamps).
	Timestamp time.Time
}

// HeaderMsgID is the JetStream de-duplication header. On EVENTS it is
// optional; when present it must be MsgID(tenant, id), or that followed by
// ":<digits>" (ingest's form when another tenant's message holds the
// plain one).
const HeaderMsgID = "Nats-Msg-Id"

// ParseStored turns a stream message into the event every consumer sees.
// The body is the input form a producer sends to POST /v1/events, and it is
// checked by exactly the rules of Decode, with the tenant of the subject in
// place of the API key's. Then eventline derives the system fields:
//
//   - RecordedAt: the stream timestamp, in UTC, truncated to microseconds;
//   - Type: "<eventable.type>.<action>"; Seq: the stream sequence;
//   - Tenant: the subject's second token (a body tenant must equal it);
//   - OccurredAt, when the body has none: RecordedAt;
//   - ID, when the body has none: a UUIDv7 made from the stream timestamp
//     and sequence (StreamEventID), the same for every consumer and every
//     rebuild;
//   - Traceparent: the traceparent header, when it is valid.
//
// The message must also be on its event's subject
// (events.<tenant>.<eventable.type>.<action>), and a Nats-Msg-Id header,
// when present, must be "<tenant>:<id>" or "<tenant>:<id>:<digits>".
//
// Legacy bodies, written by ingest before the stream body became the input
// form, carry recorded_at and type: they are accepted on the stream only;
// type must equal the derived type and recorded_at is ignored (the stream
// timestamp wins).
//
// A message that breaks any rule is a rejection: the error is a
// *ValidationError (Index 0) naming every problem with the messages HTTP
// ingest gives, plus the fields "subject" and "Nats-Msg-Id". Any other
// error means the message lacks its transport metadata (sequence or
// timestamp).
//
// The common valid message is read in one pass without reflection, by the
// scanner ingest reads bodies with (parseStoredFast); any other message,
// and every rejection, by the strict decoder, which names the problems.
// Both give the same event (FuzzParseStoredFastAgreesWithStrict).
func ParseStored(m Message) (Event, error) {
	if e, ok := parseStoredFast(m); ok {
		return e, nil
	}
	return parseStoredStrict(m)
}

// parseStoredFast is ParseStored for the common message, which it reads in
// one pass without reflection (Scanner, as ingest reads a body): a stream
// timestamp, a body of valid, storable JSON (StorableValue) with the
// contract's keys each at most once and strings of printable ASCII, an
// event that passes every rule, on its own subject, with a matching
// Nats-Msg-Id or none. It gives exactly the event of parseStoredStrict
// (FuzzParseStoredFastAgreesWithStrict); for anything else it reports false,
// and the strict path names the problems.
func parseStoredFast(m Message) (Event, bool) {
	if m.Seq == 0 || m.Timestamp.IsZero() {
		return Event{}, false
	}
	tenant, eventableType, action, ok := splitSubject(m.Subject)
	if !ok {
		return Event{}, false
	}
	recorded := m.Timestamp.UTC().Truncate(time.Microsecond)
	// Strings are substrings of one copy of the body; the particulars are
	// copied apart (m.Data may be reused, as after encoding/json).
	s := keyScan{b: m.Data, body: string(m.Data), cloneParticulars: true}
	e, ok := s.event(tenant, false)
	if !ok || !s.end() {
		return Event{}, false
	}
	if e.Eventable.Type != eventableType || e.Action != action {
		return Event{}, false
	}
	var verr ValidationError
	// The scan passed the whole event, particulars included.
	e.checkRules(0, recorded, false, &verr)
	if len(verr.Errors) > 0 {
		return Event{}, false
	}
	if e.ID == "" {
		if len(m.Header.Values(HeaderMsgID)) > 0 {
			return Event{}, false // a rejection
		}
		e.ID = StreamEventID(recorded, m.Seq)
	} else if vals := m.Header.Values(HeaderMsgID); len(vals) > 1 || (len(vals) == 1 && !msgIDMatches(vals[0], tenant, e.ID)) {
		return Event{}, false
	}
	e.derive(m, recorded, !e.OccurredAt.IsZero())
	return e, true
}

// parseStoredStrict is ParseStored by the strict decoder (decode), which
// names every problem.
func parseStoredStrict(m Message) (Event, error) {
	if m.Seq == 0 {
		return Event{}, errors.New("stored message without a stream sequence")
	}
	recorded := m.Timestamp
	if recorded.IsZero() {
		var legacy struct {
			RecordedAt time.Time `json:"recorded_at"`
		}
		if json.Unmarshal(m.Data, &legacy) != nil || legacy.RecordedAt.IsZero() {
			return Event{}, errors.New("stored message without a stream timestamp")
		}
		recorded = legacy.RecordedAt
	}
	recorded = recorded.UTC().Truncate(time.Microsecond)

	var verr ValidationError
	tenant, eventableType, action, subjectOK := splitSubject(m.Subject)
	if !subjectOK {
		verr.add(0, "subject", "is %q; events are published on events.<tenant>.<eventable type>.<action>, each token a valid name", truncate(m.Subject, 200))
	}
	e, occurred, err := decode(m.Data, decodeOptions{now: recorded, tenant: tenant, stream: true})
	var derr *ValidationError
	if errors.As(err, &derr) {
		verr.Errors = append(verr.Errors, derr.Errors...)
		// Decode zeroes a rejected event; the checks below still need
		// the fields that decoded.
		e = peekRefs(m.Data)
	} else if err != nil {
		return Event{}, err
	}
	if subjectOK && e.Eventable.Type != "" && e.Action != "" && (e.Eventable.Type != eventableType || e.Action != action) {
		if want, err := Subject(tenant, e.Eventable.Type, e.Action); err == nil {
			verr.add(0, "subject", "is %q but this event belongs on %q (events.<tenant>.<eventable.type>.<action>); publish it there", m.Subject, want)
		}
	}
	bodyID := e.ID
	if bodyID == "" && derr == nil {
		e.ID = StreamEventID(recorded, m.Seq)
	}
	checkMsgID(m.Header, tenant, e.ID, bodyID, derr, &verr)
	if err := verr.orNil(); err != nil {
		return Event{}, err
	}
	e.derive(m, recorded, occurred)
	return e, nil
}

// derive sets the fields eventline derives from a valid message (see
// ParseStored); recorded is its stream timestamp as ParseStored reads it,
// occurred whether the body set occurred_at.
func (e *Event) derive(m Message, recorded time.Time, occurred bool) {
	if !occurred {
		e.OccurredAt = recorded
	}
	e.OccurredAt = e.OccurredAt.UTC().Truncate(time.Microsecond)
	e.RecordedAt = recorded
	e.Type = TypeOf(e.Eventable.Type, e.Action)
	e.Seq = m.Seq
	if len(e.Particulars) == 0 {
		e.Particulars = json.RawMessage("{}")
	}
	if tp := m.Header.Get("traceparent"); IsTraceparent(tp) {
		e.Traceparent = tp
	}
}

// splitSubject reads events.<tenant>.<eventable type>.<action>.
func splitSubject(subject string) (tenant, eventableType, action string, ok bool) {
	prefix, rest, _ := strings.Cut(subject, ".")
	tenant, rest, _ = strings.Cut(rest, ".")
	eventableType, action, _ = strings.Cut(rest, ".")
	if prefix != SubjectPrefix || !IsTenant(tenant) || !IsName(eventableType) || !IsName(action) {
		return "", "", "", false
	}
	return tenant, eventableType, action, true
}

// peekRefs reads what a rejected body says about its id, eventable and
// action, leniently, for the subject and header checks.
func peekRefs(data []byte) Event {
	var e struct {
		ID        string `json:"id"`
		Action    string `json:"action"`
		Eventable Ref    `json:"eventable"`
	}
	_ = json.Unmarshal(data, &e)
	if !isEventID(e.ID) {
		e.ID = ""
	}
	if !IsName(e.Action) || !IsName(e.Eventable.Type) {
		e.Action, e.Eventable.Type = "", ""
	}
	return Event{ID: e.ID, Action: e.Action, Eventable: Ref{Type: e.Eventable.Type}}
}

// checkMsgID checks the Nats-Msg-Id header against the event's tenant and
// id. bodyID is the id the body sent ("" when eventline derived one); derr
// holds the body's own problems.
func checkMsgID(h nats.Header, tenant, id, bodyID string, derr *ValidationError, verr *ValidationError) {
	vals := h.Values(HeaderMsgID)
	if len(vals) == 0 || tenant == "" {
		return
	}
	if len(vals) > 1 {
		verr.add(0, HeaderMsgID, "appears %d times; send it once, as %q", len(vals), "<tenant>:<id>")
		return
	}
	v := vals[0]
	if bodyID == "" {
		if derr != nil {
			return // the body's id cannot be told; its problems are reported
		}
		hint := ""
		if rest, ok := strings.CutPrefix(v, tenant+":"); ok && isEventID(rest) {
			hint = ` ("id": "` + rest + `")`
		}
		verr.add(0, HeaderMsgID, "is %q but the body has no id; send the id in the body too%s, or leave the header out", truncate(v, 200), hint)
		return
	}
	if msgIDMatches(v, tenant, id) {
		return
	}
	want := MsgID(tenant, id)
	verr.add(0, HeaderMsgID, "is %q but must be %q (<tenant>:<id> of the body), or be left out", truncate(v, 200), want)
}

// msgIDMatches reports whether the Nats-Msg-Id v is MsgID(tenant, id),
// or that followed by ":<digits>".
func msgIDMatches(v, tenant, id string) bool {
	rest, ok := strings.CutPrefix(v, tenant)
	if !ok || !strings.HasPrefix(rest, ":") {
		return false
	}
	rest, ok = strings.CutPrefix(rest[1:], id)
	return ok && (rest == "" || (len(rest) > 1 && len(rest) <= 21 && rest[0] == ':' && allDigits(rest[1:])))
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// StreamEventID is the id of an event whose body has none: a UUIDv7
// (RFC 9562) whose 48-bit time is the stream timestamp in milliseconds,
// whose 12-bit rand_a is the microsecond within that millisecond, and whose
// 62-bit rand_b is the stream sequence. It depends only on the message, so
// every consumer and every rebuild give the event the same id, and ids sort
// by stream time.
func StreamEventID(timestamp time.Time, seq uint64) string {
	us := timestamp.UnixMicro()
	ms, sub := us/1000, us%1000
	var u uuid.UUID
	binary.BigEndian.PutUint64(u[0:8], uint64(ms)<<16|0x7000|uint64(sub))
	binary.BigEndian.PutUint64(u[8:16], seq&(1<<62-1)|1<<63)
	return u.String()
}
