package projector

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/eventline/eventline/pkg/events"
)

// decodeParents reads an event's parents column. Postgres writes a jsonb
// array of refs as `[{"id": "b1", "type": "board"}, ...]` (keys in jsonb's
// order, a space after every ':' and ','); that form is read directly,
// anything else (an escape in a string, another layout) by encoding/json.
// A page of 200 events spent ~0.4 ms in encoding/json's reflection here.
// FuzzDecodeParents holds the direct reading to encoding/json.
func decodeParents(b []byte) ([]events.Ref, error) {
	if refs, ok := scanParents(b); ok {
		return refs, nil
	}
	var refs []events.Ref
	err := json.Unmarshal(b, &refs)
	return refs, err
}

// scanParents reads the jsonb text form of a ref array; false when b is
// anything else.
func scanParents(b []byte) ([]events.Ref, bool) {
	if string(b) == "[]" {
		return []events.Ref{}, true
	}
	if len(b) < 2 || b[0] != '[' || b[len(b)-1] != ']' {
		return nil, false
	}
	rest := b[1 : len(b)-1]
	refs := make([]events.Ref, 0, bytes.Count(rest, []byte(`{"id": `)))
	for {
		var r events.Ref
		var ok bool
		if rest, ok = cutPrefix(rest, `{"id": `); !ok {
			return nil, false
		}
		if r.ID, rest, ok = plainString(rest); !ok {
			return nil, false
		}
		if rest, ok = cutPrefix(rest, `, "type": `); !ok {
			return nil, false
		}
		if r.Type, rest, ok = plainString(rest); !ok {
			return nil, false
		}
		if rest, ok = cutPrefix(rest, `}`); !ok {
			return nil, false
		}
		refs = append(refs, r)
		if len(rest) == 0 {
			return refs, true
		}
		if rest, ok = cutPrefix(rest, `, `); !ok {
			return nil, false
		}
	}
}

func cutPrefix(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return b, false
	}
	return b[len(prefix):], true
}

// plainString reads a JSON string without escapes or control characters
// at the start of b, and what follows it.
func plainString(b []byte) (string, []byte, bool) {
	if len(b) == 0 || b[0] != '"' {
		return "", b, false
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			if !utf8.Valid(b[1:i]) {
				return "", b, false
			}
			return string(b[1:i]), b[i+1:], true
		case c == '\\' || c < 0x20:
			return "", b, false
		}
	}
	return "", b, false
}
