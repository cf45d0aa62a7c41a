package ingest

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/eventline/eventline/pkg/events"
)

// fastEvent is an input event decoded straight into a struct. Struct
// decoding is lenient (case-insensitive keys, unknown keys ignored, invalid
// UTF-8 and lone surrogates replaced with U+FFFD), so parseFast pairs it
// with keyScan, which accepts only the exact keys of the contract, and
// with events.StorableValue, which accepts only valid JSON that
// events.CheckStorable passes; whatever either doubts goes to the strict
// parser.
type fastEvent struct {
	ID          string          `json:"id"`
	Tenant      string          `json:"tenant"`
	Action      string          `json:"action"`
	Eventable   events.Ref      `json:"eventable"`
	Creator     events.Ref      `json:"creator"`
	Parents     []events.Ref    `json:"parents"`
	Particulars json.RawMessage `json:"particulars"`
	OccurredAt  *string         `json:"occurred_at"`
}

// fastEventJSON is fastEvent decoded by encoding/json's reflection.
type fastEventJSON fastEvent

// UnmarshalJSON reads the common event, exact keys each at most once and
// strings of printable ASCII without escapes, in one pass without
// reflection (scan); anything else it leaves to encoding/json, so the
// result is always what encoding/json decodes (FuzzFastEventScan).
// encoding/json has already checked that data is valid JSON.
func (f *fastEvent) UnmarshalJSON(data []byte) error {
	if f.scan(data) {
		return nil
	}
	*f = fastEvent{}
	return json.Unmarshal(data, (*fastEventJSON)(f))
}

// scan decodes data, valid JSON, into the zero f when it is an object
// scan handles (UnmarshalJSON), or reports false. Strings and the
// particulars are copies: data may be reused.
func (f *fastEvent) scan(data []byte) bool {
	s := keyScan{b: data}
	s.ws()
	return s.decodeEvent(f)
}

// decodeEvent decodes the object at s.i (valid JSON) into the zero f, as
// fastEvent.scan.
func (s *keyScan) decodeEvent(f *fastEvent) bool {
	if s.b[s.i] != '{' {
		return false
	}
	return s.members(func(k []byte) (uint8, bool) {
		switch string(k) {
		case "id":
			return 1 << 0, s.plain(&f.ID)
		case "tenant":
			return 1 << 1, s.plain(&f.Tenant)
		case "action":
			return 1 << 2, s.plain(&f.Action)
		case "eventable":
			return 1 << 3, s.plainRef(&f.Eventable)
		case "creator":
			return 1 << 4, s.plainRef(&f.Creator)
		case "parents":
			return 1 << 5, s.plainRefs(&f.Parents)
		case "particulars":
			start := s.i
			s.skip()
			if s.body != "" {
				// The request body is never reused: the event keeps a
				// slice of it (capped, so nothing appends into the body).
				f.Particulars = s.b[start:s.i:s.i]
			} else {
				f.Particulars = bytes.Clone(s.b[start:s.i]) // as encoding/json copies a RawMessage
			}
			return 1 << 6, true
		case "occurred_at":
			ok := s.plain(&s.occurredAt)
			f.OccurredAt = &s.occurredAt // read before the next event
			return 1 << 7, ok
		}
		return 0, false
	})
}

// members walks the members of the object at s.i (valid JSON, s.b[s.i] is
// '{') up to and past its '}'. field consumes the value of each key and
// returns the key's bit and whether the value was taken; members fails on
// a key whose bit it has seen before (encoding/json would merge a
// repeated key), so a key that may repeat returns bit 0. k stays []byte: a
// string would escape to the heap for every key.
func (s *keyScan) members(field func(k []byte) (bit uint8, ok bool)) bool {
	s.i++
	var seen uint8
	for {
		s.ws()
		if s.b[s.i] == '}' {
			s.i++
			return true
		}
		k, ok := s.str()
		if !ok {
			return false
		}
		s.ws()
		s.i++ // ':'
		s.ws()
		bit, ok := field(k)
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		s.ws()
		if s.b[s.i] == ',' {
			s.i++
		}
	}
}

// plain reads a string of printable ASCII without escapes into dst, which
// is then exactly what encoding/json decodes; false for anything else.
func (s *keyScan) plain(dst *string) bool {
	if s.b[s.i] != '"' {
		return false
	}
	start := s.i + 1
	for i := start; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			if s.body != "" {
				*dst = s.body[start:i] // the same bytes: no copy per string
			} else {
				*dst = string(s.b[start:i])
			}
			s.i = i + 1
			return true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return false
		}
	}
	return false
}

// plainRef reads {"type": ..., "id": ...} (each key at most once, no
// other) with plain strings into the zero r.
func (s *keyScan) plainRef(r *events.Ref) bool {
	if s.b[s.i] != '{' {
		return false
	}
	return s.members(func(k []byte) (uint8, bool) {
		switch string(k) {
		case "type":
			return 1, s.plain(&r.Type)
		case "id":
			return 2, s.plain(&r.ID)
		}
		return 0, false
	})
}

// plainRefs reads an array of plainRef objects into the nil *dst: an
// empty array is an empty slice, not nil, as encoding/json decodes it.
// The refs of all the events a keyScan decodes share one backing array.
func (s *keyScan) plainRefs(dst *[]events.Ref) bool {
	if s.b[s.i] != '[' {
		return false
	}
	s.i++
	if s.refs == nil {
		s.refs = make([]events.Ref, 0, 2)
	}
	start := len(s.refs)
	for {
		s.ws()
		if s.b[s.i] == ']' {
			s.i++
			*dst = s.refs[start:len(s.refs):len(s.refs)]
			return true
		}
		s.refs = append(s.refs, events.Ref{})
		if !s.plainRef(&s.refs[len(s.refs)-1]) {
			return false
		}
		s.ws()
		if s.b[s.i] == ',' {
			s.i++
		}
	}
}

// parseFast decodes and normalizes a body that is entirely valid, or
// reports false so the strict parser can name the problems. Whatever it
// accepts, encoding/json accepts as valid JSON and the strict parser
// accepts with the same events (FuzzParseFastAgreesWithStrict).
//
// It reads the body once: the batch's frame ({"events": [ ... ]}, nothing
// else) by hand, each event with events.StorableValue, which is at once
// the syntax check encoding/json would make and the storability check of
// docs/architecture.md §2, then the event's fields with keyScan.fastEvent.
// An event that scan does not handle exactly (escapes, non-ASCII, nulls,
// repeated or unknown keys) is decoded by encoding/json, syntax check
// included, and its keys checked by keyScan.eventKeys.
func parseFast(body []byte, tenant string, now time.Time) ([]events.Event, bool) {
	s := keyScan{b: body, body: string(body)}
	s.ws()
	batch := s.batchStart()
	if !batch {
		s.i = 0
	}
	es := make([]events.Event, 0, min(MaxEventsPerRequest, 1+len(body)/256))
	s.refs = make([]events.Ref, 0, 2*cap(es))
	for {
		if len(es) == MaxEventsPerRequest {
			return nil, false
		}
		e, ok := s.event(tenant)
		if !ok {
			return nil, false
		}
		es = append(es, e)
		if !batch {
			break
		}
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ',' {
			s.i++
			continue
		}
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			s.ws()
			if s.i < len(s.b) && s.b[s.i] == '}' {
				s.i++
				break
			}
		}
		return nil, false
	}
	s.ws()
	if s.i != len(s.b) {
		return nil, false // anything after the body's one value
	}
	seen := make(map[string]struct{}, len(es))
	for i := range es {
		e := &es[i]
		if e.NormalizeStorable(now) != nil {
			return nil, false
		}
		if _, dup := seen[e.ID]; dup {
			return nil, false
		}
		seen[e.ID] = struct{}{}
	}
	return es, true
}

// batchStart reads `{"events": [` at s.i, the key exactly so and
// whitespace anywhere JSON allows it, and reports whether it was there.
func (s *keyScan) batchStart() bool {
	const key = `"events"`
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	s.ws()
	if !bytes.HasPrefix(s.b[s.i:], []byte(key)) {
		return false
	}
	s.i += len(key)
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != ':' {
		return false
	}
	s.i++
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '[' {
		return false
	}
	s.i++
	s.ws()
	return true
}

// event reads the event at s.i: its bytes must be valid, storable JSON
// (events.StorableValue) with exactly the contract's keys, and its
// tenant, if any, the key's.
func (s *keyScan) event(tenant string) (events.Event, bool) {
	s.ws()
	start := s.i
	n, ok := events.StorableValue(s.b[start:])
	if !ok {
		return events.Event{}, false
	}
	raw := s.b[start : start+n]
	f := &s.cur
	*f = fastEvent{}
	if !s.decodeEvent(f) {
		*f = fastEvent{}
		if json.Unmarshal(raw, (*fastEventJSON)(f)) != nil {
			return events.Event{}, false
		}
		keys := keyScan{b: raw}
		if !keys.eventKeys() {
			return events.Event{}, false
		}
	}
	s.i = start + n
	e := events.Event{ID: f.ID, Tenant: f.Tenant, Action: f.Action, Eventable: f.Eventable, Creator: f.Creator, Parents: f.Parents, Particulars: f.Particulars}
	if e.Tenant == "" {
		e.Tenant = tenant
	} else if e.Tenant != tenant {
		return events.Event{}, false
	}
	if string(e.Particulars) == "null" {
		e.Particulars = nil
	}
	if f.OccurredAt != nil {
		t, ok := events.ParseTimestamp(*f.OccurredAt)
		if !ok || t.Unix() < 0 { // before 1970, even the zero time: the strict parser names it
			return events.Event{}, false
		}
		e.OccurredAt = t
	}
	return e, true
}

// keyScan walks JSON that is known to be valid (encoding/json or
// events.StorableValue has accepted it): fastEvent decodes an event with
// it, and eventKeys checks that every object key of an event is exactly
// one the contract allows (case-sensitive, no escapes), so the
// struct-decoding fallback accepts only what the strict decoder accepts.
type keyScan struct {
	b []byte
	i int
	// body is string(b) when b is a request body, which is never reused:
	// decoded strings are then substrings of it and the particulars slices
	// of b, instead of one copy each.
	body string
	refs []events.Ref // backing array of the parents decoded so far
	// cur and occurredAt hold the event being decoded: one per body, not
	// one allocation per event.
	cur        fastEvent
	occurredAt string
}

func (s *keyScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// str reads a string at s.i; ok is false when it has escapes.
func (s *keyScan) str() (v []byte, ok bool) {
	s.i++
	start, ok := s.i, true
	for s.b[s.i] != '"' {
		if s.b[s.i] == '\\' {
			ok = false
			s.i++
		}
		s.i++
	}
	v = s.b[start:s.i]
	s.i++
	return v, ok
}

func (s *keyScan) skip() {
	s.ws()
	switch s.b[s.i] {
	case '"':
		s.str()
	case '{', '[':
		depth := 0
		for {
			switch s.b[s.i] {
			case '"':
				s.str()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			s.i++
			if depth == 0 {
				return
			}
		}
	default:
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return
			}
			s.i++
		}
	}
}

// object walks an object, calling field for each key; field consumes the
// value and reports whether the key is allowed (keys may repeat).
func (s *keyScan) object(field func(key []byte) bool) bool {
	s.ws()
	if s.b[s.i] != '{' {
		s.skip() // not an object: the struct decode has already typed it
		return true
	}
	return s.members(func(k []byte) (uint8, bool) { return 0, field(k) })
}

func (s *keyScan) ref() bool {
	return s.object(func(k []byte) bool {
		if string(k) != "type" && string(k) != "id" {
			return false
		}
		s.skip()
		return true
	})
}

func (s *keyScan) eventKeys() bool {
	return s.object(func(k []byte) bool {
		switch string(k) {
		case "eventable", "creator":
			return s.ref()
		case "parents":
			found, ok := s.array(s.ref)
			if !found {
				s.skip() // null: the struct decode has already typed it
			}
			return ok
		case "id", "tenant", "action", "particulars", "occurred_at":
			s.skip()
			return true
		}
		return false
	})
}

// array walks the array at s.i, calling elem on each element. found is
// false, and nothing is consumed, when the value is not an array; ok is
// false when an element fails.
func (s *keyScan) array(elem func() bool) (found, ok bool) {
	s.ws()
	if s.b[s.i] != '[' {
		return false, true
	}
	s.i++
	for {
		s.ws()
		if s.b[s.i] == ']' {
			s.i++
			return true, true
		}
		if !elem() {
			return true, false
		}
		s.ws()
		if s.b[s.i] == ',' {
			s.i++
		}
	}
}
