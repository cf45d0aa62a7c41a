package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"
)

// inputFields are the fields a producer may send, in the order errors are
// reported.
var inputFields = []string{"id", "tenant", "action", "eventable", "creator", "parents", "particulars", "occurred_at"}

// systemFields are set by eventline and refused on input.
var systemFields = map[string]bool{"recorded_at": true, "type": true, "seq": true}

// legacyFields are the system fields that bodies written to the stream by
// older ingest versions carry; ParseStored accepts them (and only them).
var legacyFields = map[string]bool{"recorded_at": true, "type": true}

// Decode parses one event sent by a producer and checks it against the
// event rules of docs/contract.md as of now. Unknown fields and the system
// fields (recorded_at, type, seq) are rejected, and so is anything the read
// models cannot store (CheckStorable) and an occurred_at before 1970 (even
// 0001-01-01T00:00:00Z, which Go reads as the zero time). The returned error
// is a *ValidationError naming every problem, with index as the event's
// position in its batch.
//
// Decode does not fill in defaults; call Normalize for that.
func Decode(data []byte, index int, now time.Time) (Event, error) {
	e, _, err := decode(data, decodeOptions{index: index, now: now})
	return e, err
}

// DecodeForTenant is Decode for a request authenticated as tenant (HTTP
// ingest): an absent tenant field is set to tenant, and a different one is
// an error on the "tenant" field.
func DecodeForTenant(data []byte, index int, tenant string, now time.Time) (Event, error) {
	e, _, err := decode(data, decodeOptions{index: index, now: now, tenant: tenant})
	return e, err
}

// decodeOptions say where an event comes from.
type decodeOptions struct {
	index int
	now   time.Time
	// tenant is the tenant of the context (API key or subject); "" when
	// the body must name it.
	tenant string
	// stream: the event was read from the stream, whose subject names the
	// tenant; the legacy fields recorded_at and type are accepted.
	stream bool
}

// decode is Decode; occurred reports whether the body set occurred_at.
func decode(data []byte, o decodeOptions) (e Event, occurred bool, err error) {
	index := o.index
	var verr ValidationError
	scan := storableScan{b: data, maxDepth: MaxDepth, root: "event", index: index}
	scanned := scan.document()
	verr.Errors = scan.errs
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		verr.add(index, "event", "must be a JSON object: %s", describeJSONError(err))
		return e, false, &verr
	}
	var unknown ValidationError
	for name := range fields {
		switch {
		case o.stream && legacyFields[name]:
		case systemFields[name]:
			unknown.add(index, name, "is set by the system and cannot be sent; remove it")
		case !isInputField(name):
			if name == "" {
				name = `""`
			}
			unknown.add(index, name, "is not a field of an event; remove it (fields: id, tenant, action, eventable, creator, parents, particulars, occurred_at)")
		}
	}
	sortFieldErrors(unknown.Errors)
	verr.Errors = append(verr.Errors, unknown.Errors...)
	decodeString(index, "id", fields["id"], &e.ID, &verr)
	decodeString(index, "tenant", fields["tenant"], &e.Tenant, &verr)
	if o.tenant != "" {
		switch e.Tenant {
		case "":
			e.Tenant = o.tenant
		case o.tenant:
		default:
			if o.stream {
				verr.add(index, "tenant", "is %q but the message is on tenant %q's subject; omit the field or send %q", truncate(e.Tenant, 64), o.tenant, o.tenant)
			} else {
				verr.add(index, "tenant", "is %q but the API key belongs to tenant %q; omit the field or send %q", truncate(e.Tenant, 64), o.tenant, o.tenant)
			}
			e.Tenant = o.tenant // reported once: the rule check below then passes
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
				decodeRef(index, parentField(i), p, &e.Parents[i], &verr)
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
		} else if t, ok := ParseTimestamp(s); !ok {
			verr.add(index, "occurred_at", "must be an RFC 3339 timestamp such as \"2026-11-25T10:00:00.123Z\"; got %q", truncate(s, 64))
		} else if t.Unix() < minOccurredAtUnix {
			// Checked here: check reads a zero time as absent, and
			// 0001-01-01T00:00:00Z is the zero time.
			verr.add(index, "occurred_at", "must not be before 1970-01-01T00:00:00Z")
		} else {
			e.OccurredAt, occurred = t, true
		}
	}
	if raw, ok := fields["type"]; ok && o.stream {
		decodeLegacyType(index, raw, &e, &verr)
	}
	if len(verr.Errors) > 0 {
		// Report the rule checks too, but only for fields that decoded.
		e.checkDecoded(index, o.now, &verr)
		return Event{}, false, &verr
	}
	// The scan above passed the whole event, particulars included: they
	// are not scanned again (docs/architecture.md §2).
	e.checkRules(index, o.now, !scanned, &verr)
	if err := verr.orNil(); err != nil {
		return Event{}, false, err
	}
	return e, occurred, nil
}

// decodeLegacyType checks the type field of a legacy stream body: it must
// be the type eventline derives, "<eventable.type>.<action>".
func decodeLegacyType(index int, raw json.RawMessage, e *Event, verr *ValidationError) {
	var typ string
	if isNull(raw) || json.Unmarshal(raw, &typ) != nil {
		verr.add(index, "type", "must be a string; eventline derives the type, so leave it out")
		return
	}
	if !IsName(e.Eventable.Type) || !IsName(e.Action) {
		return // the type cannot be derived; those fields are reported
	}
	if want := TypeOf(e.Eventable.Type, e.Action); typ != want {
		verr.add(index, "type", "is %q but the event's type is %q (<eventable.type>.<action>); leave it out, eventline derives it", truncate(typ, 130), want)
	}
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
	// In the order of their names, as an event's unknown fields: a map's
	// order changes from one call to the next.
	var unknown ValidationError
	for name := range fields {
		if name != "type" && name != "id" {
			if name == "" {
				name = `""`
			}
			unknown.add(index, field+"."+name, "is not a field of a reference; remove it (fields: type, id)")
		}
	}
	sortFieldErrors(unknown.Errors)
	verr.Errors = append(verr.Errors, unknown.Errors...)
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
