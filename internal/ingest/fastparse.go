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
func (s *keyScan) object(field func(key string) bool) bool {
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
		if !field(string(k)) {
			return false
		}
		s.ws()
		if s.b[s.i] == ',' {
			s.i++
		}
	}
}

func (s *keyScan) ref() bool {
	return s.object(func(k string) bool {
		if k != "type" && k != "id" {
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
	return s.object(func(k string) bool {
		switch k {
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
	return s.object(func(k string) bool {
		if k != "events" {
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
