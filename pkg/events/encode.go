package events

import (
	"encoding/json"
	"strconv"
	"time"
)

// appendInput appends the input form of e (MarshalInput) to dst without
// reflection, byte for byte what encoding/json writes for inputForm, and
// reports false, with dst unchanged, when e has anything it does not
// handle the same way (a string that needs escaping, a non-ASCII string, or
// particulars with '<', '>', '&' or U+2028/U+2029, which encoding/json
// escapes): MarshalInput then falls back to encoding/json. Particulars
// must be valid JSON (Normalize checks it); whitespace between their tokens
// is dropped, as encoding/json compacts a RawMessage.
// TestAppendInputMatchesJSON and FuzzAppendInput hold it to encoding/json.
func appendInput(dst []byte, e *Event) ([]byte, bool) {
	start := len(dst)
	ok := true
	dst = append(dst, '{')
	if e.ID != "" {
		dst = append(dst, `"id":`...)
		dst, ok = appendPlainString(dst, e.ID)
		dst = append(dst, ',')
	}
	if ok && e.Tenant != "" {
		dst = append(dst, `"tenant":`...)
		dst, ok = appendPlainString(dst, e.Tenant)
		dst = append(dst, ',')
	}
	if ok {
		dst, ok = appendInputFields(dst, e)
	}
	if !ok {
		return dst[:start], false
	}
	return append(dst, '}'), true
}

// AppendStored appends the stored form of e (Event.MarshalJSON) to dst
// without reflection, byte for byte what MarshalJSON writes, and reports
// false, with dst unchanged, when e has anything appendInput does not
// handle (the caller then uses MarshalJSON). A page of the timeline API is
// written so: encoding/json would spend most of a page's CPU on
// reflection and on compacting each event's MarshalJSON again.
// TestAppendStoredMatchesJSON and FuzzAppendInput hold it to MarshalJSON.
func AppendStored(dst []byte, e *Event) ([]byte, bool) {
	start := len(dst)
	dst = append(dst, `{"id":`...)
	dst, ok := appendPlainString(dst, e.ID)
	if ok {
		dst = append(dst, `,"tenant":`...)
		dst, ok = appendPlainString(dst, e.Tenant)
	}
	if ok {
		dst = append(dst, ',')
		dst, ok = appendInputFields(dst, e)
	}
	if ok && !e.RecordedAt.IsZero() {
		dst = append(dst, `,"recorded_at":"`...)
		dst = e.RecordedAt.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	if ok {
		dst = append(dst, `,"type":`...)
		dst, ok = appendPlainString(dst, e.Type)
	}
	if !ok {
		return dst[:start], false
	}
	if e.Seq != 0 {
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendUint(dst, e.Seq, 10)
	}
	return append(dst, '}'), true
}

// appendInputFields appends the members of the input form from action to
// occurred_at, without the braces.
func appendInputFields(dst []byte, e *Event) ([]byte, bool) {
	ok := true
	member := func(name string, v string) {
		if ok {
			dst = append(dst, name...)
			dst, ok = appendPlainString(dst, v)
		}
	}
	ref := func(name string, r Ref) {
		member(name+`{"type":`, r.Type)
		member(`,"id":`, r.ID)
		dst = append(dst, '}')
	}
	member(`"action":`, e.Action)
	ref(`,"eventable":`, e.Eventable)
	ref(`,"creator":`, e.Creator)
	dst = append(dst, `,"parents":[`...)
	for i, p := range e.Parents {
		sep := ","
		if i == 0 {
			sep = ""
		}
		ref(sep, p)
	}
	if !ok {
		return dst, false
	}
	dst = append(dst, `],"particulars":`...)
	if len(e.Particulars) == 0 {
		dst = append(dst, "{}"...)
	} else if dst, ok = appendCompactPlain(dst, e.Particulars); !ok {
		return dst, false
	}
	if !e.OccurredAt.IsZero() {
		dst = append(dst, `,"occurred_at":"`...)
		dst = e.OccurredAt.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	return dst, true
}

// appendPlainString appends s as a JSON string and reports true when s
// needs no escaping by encoding/json (printable ASCII without '"', '\',
// '<', '>', '&'); else it reports false (dst may then hold a partial
// member: the callers drop it).
func appendPlainString(dst []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return dst, false
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"'), true
}

// appendCompactPlain appends the valid JSON value v without the whitespace
// between its tokens, as encoding/json compacts a RawMessage, and reports
// false when v has a byte encoding/json would escape there ('<', '>', '&')
// or the lead byte of U+2028/U+2029 (0xE2), or is empty.
func appendCompactPlain(dst []byte, v []byte) ([]byte, bool) {
	if len(v) == 0 {
		return dst, false
	}
	inString, escaped := false, false
	from := 0
	for i, c := range v {
		switch c {
		case '<', '>', '&', 0xE2:
			return dst, false
		}
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case ' ', '\t', '\n', '\r':
			dst = append(dst, v[from:i]...)
			from = i + 1
		}
	}
	return append(dst, v[from:]...), true
}

// marshalInputJSON is MarshalInput by encoding/json.
func (e Event) marshalInputJSON() ([]byte, error) {
	return json.Marshal(e.inputForm())
}
