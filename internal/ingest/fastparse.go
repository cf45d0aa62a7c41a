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
// with keyScan, which accepts only the exact keys of the contract and only
// events that events.CheckStorable passes; whatever either doubts goes to
// the strict parser.
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
// scan handles (UnmarshalJSON), or reports false.
func (f *fastEvent) scan(data []byte) bool {
	s := keyScan{b: data}
	s.ws()
	if s.b[s.i] != '{' {
		return false
	}
	s.i++
	var seen uint8
	for {
		s.ws()
		if s.b[s.i] == '}' {
			return true
		}
		k, ok := s.str()
		if !ok {
			return false
		}
		s.ws()
		s.i++ // ':'
		s.ws()
		var bit uint8
		switch string(k) {
		case "id":
			bit, ok = 1<<0, s.plain(&f.ID)
		case "tenant":
			bit, ok = 1<<1, s.plain(&f.Tenant)
		case "action":
			bit, ok = 1<<2, s.plain(&f.Action)
		case "eventable":
			bit, ok = 1<<3, s.plainRef(&f.Eventable)
		case "creator":
			bit, ok = 1<<4, s.plainRef(&f.Creator)
		case "parents":
			bit, ok = 1<<5, s.plainRefs(&f.Parents)
		case "particulars":
			start := s.i
			s.skip()
			bit, ok = 1<<6, true
			f.Particulars = bytes.Clone(s.b[start:s.i]) // as encoding/json copies a RawMessage
		case "occurred_at":
			var t string
			bit, ok = 1<<7, s.plain(&t)
			f.OccurredAt = &t
		default:
			return false
		}
		if !ok || seen&bit != 0 { // a repeated key: encoding/json merges
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
			*dst = string(s.b[start:i])
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
		var bit uint8
		switch string(k) {
		case "type":
			bit, ok = 1, s.plain(&r.Type)
		case "id":
			bit, ok = 2, s.plain(&r.ID)
		default:
			return false
		}
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

// plainRefs reads an array of plainRef objects into the nil *dst: an
// empty array is an empty slice, not nil, as encoding/json decodes it.
func (s *keyScan) plainRefs(dst *[]events.Ref) bool {
	if s.b[s.i] != '[' {
		return false
	}
	s.i++
	out := make([]events.Ref, 0, 2)
	for {
		s.ws()
		if s.b[s.i] == ']' {
			s.i++
			*dst = out
			return true
		}
		var r events.Ref
		if !s.plainRef(&r) {
			return false
		}
		out = append(out, r)
		s.ws()
		if s.b[s.i] == ',' {
			s.i++
		}
	}
}

// parseFast decodes and normalizes a body that is entirely valid, or
// reports false so the strict parser can name the problems. Whatever it
// accepts, the strict parser accepts with the same events
// (FuzzParseFastAgreesWithStrict).
func parseFast(body []byte, tenant string, now time.Time) ([]events.Event, bool) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	var fes []fastEvent
	if bytes.HasPrefix(trimmed, []byte(`{"events":`)) {
		var batch struct {
			Events []fastEvent `json:"events"`
		}
		if json.Unmarshal(body, &batch) != nil || !batchKeysOK(body) {
			return nil, false
		}
		fes = batch.Events
	} else {
		var one fastEvent
		if json.Unmarshal(body, &one) != nil {
			return nil, false
		}
		sc := keyScan{b: body}
		if !sc.event() {
			return nil, false
		}
		fes = []fastEvent{one}
	}
	if len(fes) == 0 || len(fes) > MaxEventsPerRequest {
		return nil, false
	}
	es := make([]events.Event, len(fes))
	seen := make(map[string]struct{}, len(fes))
	for i := range fes {
		f := &fes[i]
		e := events.Event{ID: f.ID, Tenant: f.Tenant, Action: f.Action, Eventable: f.Eventable, Creator: f.Creator, Parents: f.Parents, Particulars: f.Particulars}
		if e.Tenant == "" {
			e.Tenant = tenant
		} else if e.Tenant != tenant {
			return nil, false
		}
		if string(e.Particulars) == "null" {
			e.Particulars = nil
		}
		if f.OccurredAt != nil {
			t, ok := events.ParseTimestamp(*f.OccurredAt)
			if !ok || t.Unix() < 0 { // before 1970, even the zero time: the strict parser names it
				return nil, false
			}
			e.OccurredAt = t
		}
		if e.Normalize(now) != nil {
			return nil, false
		}
		if _, dup := seen[e.ID]; dup {
			return nil, false
		}
		seen[e.ID] = struct{}{}
		es[i] = e
	}
	return es, true
}

// keyScan walks JSON that encoding/json has already accepted and checks
// that every object key is exactly one the contract allows (case-sensitive,
// no escapes), so the struct-decoding fast path accepts only what the
// strict decoder accepts.
type keyScan struct {
	b []byte
	i int
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
// value and reports whether the key is allowed.
func (s *keyScan) object(field func(key []byte) bool) bool {
	s.ws()
	if s.b[s.i] != '{' {
		s.skip() // not an object: the struct decode has already typed it
		return true
	}
	s.i++
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
		// k stays []byte: a string would escape to the heap for every key.
		if !field(k) {
			return false
		}
		s.ws()
		if s.b[s.i] == ',' {
			s.i++
		}
	}
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

// event walks one event: its keys must be the contract's, and the event
// must be storable (events.CheckStorable, one pass over its bytes).
func (s *keyScan) event() bool {
	s.ws()
	start := s.i
	return s.eventKeys() && events.CheckStorable(s.b[start:s.i], "event") == nil
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

func batchKeysOK(body []byte) bool {
	s := keyScan{b: body}
	return s.object(func(k []byte) bool {
		if string(k) != "events" {
			return false
		}
		found, ok := s.array(s.event)
		return found && ok
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
