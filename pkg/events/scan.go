package events

import (
	"bytes"
	"encoding/json"
)

// Scanner reads events in their input form (MarshalInput) in one pass and
// without reflection, for the common body: each event's bytes are proven
// valid, storable JSON by StorableValue (at once the syntax check
// encoding/json would make and the storability check of
// docs/architecture.md §2), then its fields are read by a scanner that
// takes only the exact keys of the contract. Whatever it doubts it
// refuses, and the caller's strict parser names the problems. Ingest reads
// request bodies with it; ParseStored reads stream messages with the same
// scanner.
type Scanner struct{ s keyScan }

// NewScanner returns a Scanner over body, which is never modified while
// the events it decodes are in use: their strings are substrings of one
// copy of body, their particulars slices of body (capped, so nothing
// appends into it). events is about how many events body holds.
func NewScanner(body []byte, events int) *Scanner {
	return &Scanner{s: keyScan{b: body, body: string(body), refs: make([]Ref, 0, 2*events)}}
}

// Event reads the event at the scanner's position, after any whitespace.
// Its bytes must be valid, storable JSON with exactly the contract's keys,
// and its tenant, if any, tenant (an absent one is set to tenant). An
// event the one-pass decoder does not handle exactly (escapes, non-ASCII,
// nulls, repeated keys) is decoded by encoding/json and its keys checked.
// The event is neither checked against the rules nor normalized: call
// NormalizeStorable. ok false: the strict parser must read the body.
func (sc *Scanner) Event(tenant string) (e Event, ok bool) {
	return sc.s.event(tenant, true)
}

// Byte skips whitespace and consumes c if it comes next.
func (sc *Scanner) Byte(c byte) bool {
	sc.s.ws()
	if sc.s.i < len(sc.s.b) && sc.s.b[sc.s.i] == c {
		sc.s.i++
		return true
	}
	return false
}

// Literal skips whitespace and consumes lit if it comes next.
func (sc *Scanner) Literal(lit string) bool {
	sc.s.ws()
	if len(sc.s.b)-sc.s.i < len(lit) || string(sc.s.b[sc.s.i:sc.s.i+len(lit)]) != lit {
		return false
	}
	sc.s.i += len(lit)
	return true
}

// Rewind goes back to the start of the body.
func (sc *Scanner) Rewind() { sc.s.i = 0 }

// End skips whitespace and reports whether the body ends there.
func (sc *Scanner) End() bool { return sc.s.end() }

// event reads the event at s.i: its bytes must be valid, storable JSON
// (StorableValue) with exactly the contract's keys, and its tenant, if
// any, tenant. With fallback, an event decodeEvent does not handle is
// decoded by encoding/json and its keys checked by eventKeys; without, it
// is refused.
func (s *keyScan) event(tenant string, fallback bool) (Event, bool) {
	s.ws()
	start := s.i
	n, ok := StorableValue(s.b[start:])
	if !ok {
		return Event{}, false
	}
	raw := s.b[start : start+n]
	f := &s.cur
	*f = fastEvent{}
	if !s.decodeEvent(f) {
		if !fallback {
			return Event{}, false
		}
		*f = fastEvent{}
		if json.Unmarshal(raw, f) != nil {
			return Event{}, false
		}
		keys := keyScan{b: raw}
		if !keys.eventKeys() {
			return Event{}, false
		}
	}
	s.i = start + n
	e := Event{ID: f.ID, Tenant: f.Tenant, Action: f.Action, Eventable: f.Eventable, Creator: f.Creator, Parents: f.Parents, Particulars: f.Particulars}
	if e.Tenant == "" {
		e.Tenant = tenant
	} else if e.Tenant != tenant {
		return Event{}, false
	}
	if string(e.Particulars) == "null" {
		e.Particulars = nil
	}
	if f.OccurredAt != nil {
		t, ok := ParseTimestamp(*f.OccurredAt)
		if !ok || t.Unix() < minOccurredAtUnix { // before 1970, even the zero time: the strict parser names it
			return Event{}, false
		}
		e.OccurredAt = t
	}
	return e, true
}

// fastEvent is an input event decoded straight into a struct. Struct
// decoding is lenient (case-insensitive keys, unknown keys ignored, invalid
// UTF-8 and lone surrogates replaced with U+FFFD), so event pairs it with
// StorableValue, which accepts only valid JSON that CheckStorable passes,
// and with keyScan, which accepts only the exact keys of the contract;
// whatever either doubts goes to the strict parser.
type fastEvent struct {
	ID          string          `json:"id"`
	Tenant      string          `json:"tenant"`
	Action      string          `json:"action"`
	Eventable   Ref             `json:"eventable"`
	Creator     Ref             `json:"creator"`
	Parents     []Ref           `json:"parents"`
	Particulars json.RawMessage `json:"particulars"`
	OccurredAt  *string         `json:"occurred_at"`
}

// scan decodes data, valid JSON, into the zero f when it is an object
// decodeEvent handles, or reports false; what it decodes is always what
// encoding/json decodes into a fastEvent (FuzzFastEventScan). Strings and
// the particulars are copies: data may be reused.
func (f *fastEvent) scan(data []byte) bool {
	s := keyScan{b: data}
	s.ws()
	return s.decodeEvent(f)
}

// decodeEvent decodes the object at s.i (valid JSON) into the zero f when
// its keys are exactly the contract's, each at most once, and its strings
// printable ASCII without escapes; false for anything else.
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
			if s.body != "" && !s.cloneParticulars {
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
func (s *keyScan) plainRef(r *Ref) bool {
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
func (s *keyScan) plainRefs(dst *[]Ref) bool {
	if s.b[s.i] != '[' {
		return false
	}
	s.i++
	if s.refs == nil {
		s.refs = make([]Ref, 0, 2)
	}
	start := len(s.refs)
	for {
		s.ws()
		if s.b[s.i] == ']' {
			s.i++
			*dst = s.refs[start:len(s.refs):len(s.refs)]
			return true
		}
		s.refs = append(s.refs, Ref{})
		if !s.plainRef(&s.refs[len(s.refs)-1]) {
			return false
		}
		s.ws()
		if s.b[s.i] == ',' {
			s.i++
		}
	}
}

// keyScan walks JSON that is known to be valid (encoding/json or
// StorableValue has accepted it): decodeEvent decodes an event with it,
// and eventKeys checks that every object key of an event is exactly one
// the contract allows (case-sensitive, no escapes), so the
// struct-decoding fallback accepts only what the strict decoder accepts.
type keyScan struct {
	b []byte
	i int
	// body is string(b) when b is never modified while the decoded events
	// are in use: decoded strings are then substrings of it and the
	// particulars slices of b, instead of one copy each.
	body string
	// cloneParticulars: b may be modified (a stream message's data), so
	// the particulars are copied even when body is set.
	cloneParticulars bool
	refs             []Ref // backing array of the parents decoded so far
	// cur and occurredAt hold the event being decoded: one per body, not
	// one allocation per event.
	cur        fastEvent
	occurredAt string
}

func (s *keyScan) ws() { s.i = skipWS(s.b, s.i) }

// end skips whitespace and reports whether b ends there.
func (s *keyScan) end() bool {
	s.ws()
	return s.i == len(s.b)
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

// eventKeys checks the keys of the event at s.i, which encoding/json has
// decoded into a fastEvent. eventable, creator and parents may appear only
// once: encoding/json decodes a repeated object into the struct it
// decoded first, merging the two, where the strict decoder keeps the last
// one alone; a repeated string is the last one in both.
func (s *keyScan) eventKeys() bool {
	s.ws()
	if s.b[s.i] != '{' {
		s.skip() // not an object: the struct decode has already typed it
		return true
	}
	return s.members(func(k []byte) (uint8, bool) {
		switch string(k) {
		case "eventable":
			return 1 << 0, s.ref()
		case "creator":
			return 1 << 1, s.ref()
		case "parents":
			found, ok := s.array(s.ref)
			if !found {
				s.skip() // null: the struct decode has already typed it
			}
			return 1 << 2, ok
		case "id", "tenant", "action", "particulars", "occurred_at":
			s.skip()
			return 0, true
		}
		return 0, false
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
