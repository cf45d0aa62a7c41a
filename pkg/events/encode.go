package events

import (
	"encoding/json"
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
	fail := func() ([]byte, bool) { return dst[:start], false }
	str := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return false
			}
		}
		dst = append(dst, '"')
		dst = append(dst, s...)
		dst = append(dst, '"')
		return true
	}
	ref := func(r Ref) bool {
		dst = append(dst, `{"type":`...)
		if !str(r.Type) {
			return false
		}
		dst = append(dst, `,"id":`...)
		if !str(r.ID) {
			return false
		}
		dst = append(dst, '}')
		return true
	}
	dst = append(dst, '{')
	if e.ID != "" {
		dst = append(dst, `"id":`...)
		if !str(e.ID) {
			return fail()
		}
		dst = append(dst, ',')
	}
	if e.Tenant != "" {
		dst = append(dst, `"tenant":`...)
		if !str(e.Tenant) {
			return fail()
		}
		dst = append(dst, ',')
	}
	dst = append(dst, `"action":`...)
	if !str(e.Action) {
		return fail()
	}
	dst = append(dst, `,"eventable":`...)
	if !ref(e.Eventable) {
		return fail()
	}
	dst = append(dst, `,"creator":`...)
	if !ref(e.Creator) {
		return fail()
	}
	dst = append(dst, `,"parents":[`...)
	for i, p := range e.Parents {
		if i > 0 {
			dst = append(dst, ',')
		}
		if !ref(p) {
			return fail()
		}
	}
	dst = append(dst, `],"particulars":`...)
	if len(e.Particulars) == 0 {
		dst = append(dst, "{}"...)
	} else {
		var ok bool
		if dst, ok = appendCompactPlain(dst, e.Particulars); !ok {
			return fail()
		}
	}
	if !e.OccurredAt.IsZero() {
		dst = append(dst, `,"occurred_at":"`...)
		dst = e.OccurredAt.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	dst = append(dst, '}')
	return dst, true
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
