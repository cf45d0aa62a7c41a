package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// inputFields are the fields a producer may send, in the order errors are
// reported.
var inputFields = []string{"id", "tenant", "action", "eventable", "creator", "parents", "particulars", "occurred_at"}

// systemFields are set by eventline and refused on input.
var systemFields = map[string]bool{"recorded_at": true, "type": true, "seq": true}

// Decode parses one event sent by a producer and checks it against
// CONTRACT §1 as of now. Unknown fields and the system fields (recorded_at,
// type, seq) are rejected. The returned error is a *ValidationError naming
// every problem, with index as the event's position in its batch.
//
// Decode does not fill in defaults; call Normalize for that.
func Decode(data []byte, index int, now time.Time) (Event, error) {
	return decode(data, index, now, "")
}

// DecodeForTenant is Decode for a request authenticated as tenant (HTTP
// ingest): an absent tenant field is set to tenant, and a different one is
// an error on the "tenant" field.
func DecodeForTenant(data []byte, index int, tenant string, now time.Time) (Event, error) {
	return decode(data, index, now, tenant)
}

func decode(data []byte, index int, now time.Time, keyTenant string) (Event, error) {
	var e Event
	var verr ValidationError
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		verr.add(index, "event", "must be a JSON object: %s", describeJSONError(err))
		return e, &verr
	}
	for name := range fields {
		if systemFields[name] {
			verr.add(index, name, "is set by the system and cannot be sent; remove it")
		} else if !isInputField(name) {
			if name == "" {
				name = `""`
			}
			verr.add(index, name, "is not a field of an event; remove it (fields: id, tenant, action, eventable, creator, parents, particulars, occurred_at)")
		}
	}
	sortFieldErrors(verr.Errors)
	decodeString(index, "id", fields["id"], &e.ID, &verr)
	decodeString(index, "tenant", fields["tenant"], &e.Tenant, &verr)
	if keyTenant != "" {
		switch e.Tenant {
		case "":
			e.Tenant = keyTenant
		case keyTenant:
		default:
			verr.add(index, "tenant", "is %q but the API key belongs to tenant %q; omit the field or send %q", truncate(e.Tenant, 64), keyTenant, keyTenant)
			e.Tenant = keyTenant // reported once: the rule check below then passes
		}
	}
	decodeString(index, "action", fields["action"], &e.Action, &verr)
	decodeRef(index, "eventable", fields["eventable"], &e.Eventable, &verr)
	decodeRef(index, "creator", fields["creator"], &e.Creator, &verr)
	if raw := fields["parents"]; !isNull(raw) {
		var parents []json.RawMessage
		if err := json.Unmarshal(raw, &parents); err != nil {
			verr.add(index, "parents", "must be an array of {\"type\", \"id\"} objects")
		} else {
			e.Parents = make([]Ref, len(parents))
			for i, p := range parents {
				if i >= MaxParents {
					break // the count is reported by check
				}
				decodeRef(index, fmt.Sprintf("parents[%d]", i), p, &e.Parents[i], &verr)
			}
		}
	}
	if raw := fields["particulars"]; !isNull(raw) {
		if !isJSONObject(raw) {
			verr.add(index, "particulars", "must be a JSON object")
		} else {
			e.Particulars = bytes.Clone(raw)
		}
	}
	if raw := fields["occurred_at"]; !isNull(raw) {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			verr.add(index, "occurred_at", "must be an RFC 3339 timestamp string such as \"2026-11-25T10:00:00.123Z\"")
		} else if t, err := time.Parse(time.RFC3339Nano, s); err != nil {
			verr.add(index, "occurred_at", "must be an RFC 3339 timestamp such as \"2026-11-25T10:00:00.123Z\"; got %q", truncate(s, 64))
		} else {
			e.OccurredAt = t
		}
	}
	if len(verr.Errors) > 0 {
		// Report the rule checks too, but only for fields that decoded.
		e.checkDecoded(index, now, &verr)
		return Event{}, &verr
	}
	e.check(index, now, &verr)
	if err := verr.orNil(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// checkDecoded runs the rule checks and keeps only the errors of fields that
// have no decoding error yet, so one field is never reported twice.
func (e *Event) checkDecoded(index int, now time.Time, verr *ValidationError) {
	seen := make(map[string]bool, len(verr.Errors))
	for _, fe := range verr.Errors {
		seen[fe.Field] = true
	}
	var rules ValidationError
	e.check(index, now, &rules)
	for _, fe := range rules.Errors {
		if !seen[fe.Field] && !seen[topField(fe.Field)] {
			verr.Errors = append(verr.Errors, fe)
		}
	}
}

func decodeString(index int, field string, raw json.RawMessage, dst *string, verr *ValidationError) {
	if isNull(raw) {
		return
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		verr.add(index, field, "must be a string")
	}
}

func decodeRef(index int, field string, raw json.RawMessage, dst *Ref, verr *ValidationError) {
	if isNull(raw) {
		return // "is required" comes from check
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		verr.add(index, field, "must be an object {\"type\": \"...\", \"id\": \"...\"}")
		return
	}
	for name := range fields {
		if name != "type" && name != "id" {
			if name == "" {
				name = `""`
			}
			verr.add(index, field+"."+name, "is not a field of a reference; remove it (fields: type, id)")
		}
	}
	decodeString(index, field+".type", fields["type"], &dst.Type, verr)
	decodeString(index, field+".id", fields["id"], &dst.ID, verr)
}

func isInputField(name string) bool {
	for _, f := range inputFields {
		if f == name {
			return true
		}
	}
	return false
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

// topField returns "parents" for "parents[2].id" and "eventable" for
// "eventable.type".
func topField(f string) string {
	for i := 0; i < len(f); i++ {
		if f[i] == '.' || f[i] == '[' {
			return f[:i]
		}
	}
	return f
}

func sortFieldErrors(errs []FieldError) {
	slices.SortFunc(errs, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
}

func describeJSONError(err error) string {
	if err == nil {
		return "got null"
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return "got " + typeErr.Value
	}
	return err.Error()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// ParseStored decodes an event as stored on the stream (system fields
// included) and checks it against the contract and against the subject it
// was stored under. Consumers use it; an error means the message is poison
// and belongs in a dead-letter store.
func ParseStored(subject string, data []byte, seq uint64) (Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return Event{}, fmt.Errorf("decode stored event: %w", err)
	}
	if e.ID == "" || e.RecordedAt.IsZero() || e.OccurredAt.IsZero() {
		return Event{}, errors.New("stored event lacks id, occurred_at or recorded_at")
	}
	var verr ValidationError
	e.check(0, e.RecordedAt, &verr)
	if err := verr.orNil(); err != nil {
		return Event{}, err
	}
	if want, _ := Subject(e.Tenant, e.Eventable.Type, e.Action); want != subject {
		return Event{}, fmt.Errorf("stored event belongs on subject %q, found on %q", want, subject)
	}
	if e.Type != TypeOf(e.Eventable.Type, e.Action) {
		return Event{}, fmt.Errorf("stored event has type %q, want %q", e.Type, TypeOf(e.Eventable.Type, e.Action))
	}
	if len(e.Particulars) == 0 {
		e.Particulars = json.RawMessage("{}")
	}
	e.Seq = seq
	return e, nil
}
