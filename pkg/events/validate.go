package events

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Limits of an event (docs/contract.md); CheckStorable adds the limits of
// what the read models can store (MaxDepth, MaxNumberExponent,
// MaxNumberScale).
const (
	MaxIDLen          = 64       // bytes of an event id
	MaxTokenLen       = 63       // bytes of a tenant, action or ref type
	MaxRefIDLen       = 256      // bytes of a ref id
	MaxParents        = 16       // parents per event
	MaxParticulars    = 64 << 10 // bytes of encoded particulars
	MaxFutureSkew     = 24 * time.Hour
	minOccurredAtUnix = 0 // 1970-01-01T00:00:00Z
)

// FieldError is one problem with one field of one event. Index is the
// event's position in its batch (0 for a single event). Field is a JSON path
// such as "eventable.id", "parents[2].type" or "particulars.items[3].n";
// "event" means the event as a whole. A rejected stream message
// (ParseStored) may also name "subject" and "Nats-Msg-Id".
type FieldError struct {
	Index   int    `json:"index"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every problem found in one or more events. It is
// returned by Decode and Normalize and means the input must be corrected;
// retrying it unchanged fails the same way.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	if len(e.Errors) == 0 {
		return "invalid event"
	}
	var b strings.Builder
	for i, fe := range e.Errors {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "event %d: %s: %s", fe.Index, fe.Field, fe.Message)
	}
	return b.String()
}

func (e *ValidationError) add(index int, field, format string, args ...any) {
	e.Errors = append(e.Errors, FieldError{Index: index, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (e *ValidationError) orNil() error {
	if len(e.Errors) == 0 {
		return nil
	}
	return e
}

// Normalize checks e against every rule of an event (docs/contract.md),
// particulars included (CheckStorable), and, when it is valid, fills in
// what the system sets: a UUIDv7 ID when absent, OccurredAt (default now),
// RecordedAt (now, unless already set by the receiver), Type and empty
// Particulars. Times are converted to UTC and truncated to microseconds,
// the precision every read model stores. now is the receive time. A
// Traceparent that is not a valid W3C traceparent is dropped. A zero
// OccurredAt means "absent": Decode refuses a body that sends the zero
// time (0001-01-01T00:00:00Z) before Normalize could mistake it.
//
// RecordedAt and Type are not written to the stream (MarshalInput):
// consumers derive them from the message (ParseStored).
//
// It returns a *ValidationError naming every invalid field, and leaves e
// unchanged in that case. Normalizing a normalized event changes nothing.
func (e *Event) Normalize(now time.Time) error {
	return e.normalize(now, true)
}

// NormalizeStorable is Normalize for an event decoded from bytes that
// StorableValue or CheckStorable has passed whole (docs/architecture.md
// §2: what ingest accepts passes the one validation): the particulars
// were proven valid and storable there, so they are not scanned a second
// time. Their size and that they are an object are still checked, and
// every other rule is. Any other caller uses Normalize.
func (e *Event) NormalizeStorable(now time.Time) error {
	return e.normalize(now, false)
}

func (e *Event) normalize(now time.Time, scanParticulars bool) error {
	var verr ValidationError
	e.checkRules(0, now, scanParticulars, &verr)
	if len(verr.Errors) > 0 {
		err := verr // only a failing event allocates its error
		return &err
	}
	if e.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("generate event id: %w", err)
		}
		e.ID = id.String()
	}
	now = now.UTC().Truncate(time.Microsecond)
	if e.OccurredAt.IsZero() {
		e.OccurredAt = now
	}
	e.OccurredAt = e.OccurredAt.UTC().Truncate(time.Microsecond)
	if e.RecordedAt.IsZero() {
		e.RecordedAt = now
	}
	e.RecordedAt = e.RecordedAt.UTC().Truncate(time.Microsecond)
	if !IsTraceparent(e.Traceparent) {
		e.Traceparent = ""
	}
	e.Type = TypeOf(e.Eventable.Type, e.Action)
	if len(e.Particulars) == 0 {
		e.Particulars = json.RawMessage("{}")
	}
	return nil
}

// check appends every rule violation of e to verr, with the given index.
func (e *Event) check(index int, now time.Time, verr *ValidationError) {
	e.checkRules(index, now, true, verr)
}

// checkRules is check; without scanParticulars the particulars are taken
// as valid, storable JSON (the caller scanned the bytes they came from)
// and only their size and kind are checked.
func (e *Event) checkRules(index int, now time.Time, scanParticulars bool, verr *ValidationError) {
	if e.ID != "" && !isEventID(e.ID) {
		verr.add(index, "id", "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'; omit it to let the server assign one")
	}
	switch {
	case e.Tenant == "":
		verr.add(index, "tenant", "is required")
	case !IsTenant(e.Tenant):
		verr.add(index, "tenant", "must match ^[a-z0-9][a-z0-9_-]{0,62}$")
	}
	checkName(index, "action", e.Action, verr)
	checkRef(index, "eventable", e.Eventable, verr)
	checkRef(index, "creator", e.Creator, verr)
	if len(e.Parents) > MaxParents {
		verr.add(index, "parents", "has %d entries; at most %d are allowed", len(e.Parents), MaxParents)
	}
	for i, p := range e.Parents {
		checkRef(index, parentField(i), p, verr)
	}
	if len(e.Particulars) > 0 {
		if len(e.Particulars) > MaxParticulars {
			verr.add(index, "particulars", "is %d bytes encoded; at most %d (64 KiB) are allowed", len(e.Particulars), MaxParticulars)
		} else if !scanParticulars {
			if !isJSONObject(e.Particulars) {
				verr.add(index, "particulars", "must be a JSON object")
			}
		} else if valid, errs := checkStorableAt(e.Particulars, index, "particulars", 2); len(errs) > 0 {
			verr.Errors = append(verr.Errors, errs...)
		} else if !valid || !isJSONObject(e.Particulars) {
			verr.add(index, "particulars", "must be a JSON object")
		}
	}
	if !e.OccurredAt.IsZero() {
		switch {
		case e.OccurredAt.Unix() < minOccurredAtUnix:
			verr.add(index, "occurred_at", "must not be before 1970-01-01T00:00:00Z")
		case e.OccurredAt.After(now.Add(MaxFutureSkew)):
			verr.add(index, "occurred_at", "is more than 24h in the future (server time %s); check the producer's clock", now.UTC().Format(time.RFC3339))
		}
	}
}

// parentFields are the names of the parents, made once: check runs on
// every ingested event.
var parentFields = func() (f [MaxParents]string) {
	for i := range f {
		f[i] = fmt.Sprintf("parents[%d]", i)
	}
	return f
}()

func parentField(i int) string {
	if i < len(parentFields) {
		return parentFields[i]
	}
	return fmt.Sprintf("parents[%d]", i)
}

func checkName(index int, field, v string, verr *ValidationError) {
	checkNameAt(index, field, "", v, verr)
}

// checkNameAt checks the name at field+suffix; the path is only built for
// an error (Normalize runs on every ingested event).
func checkNameAt(index int, field, suffix, v string, verr *ValidationError) {
	switch {
	case v == "":
		verr.add(index, field+suffix, "is required")
	case !IsName(v):
		verr.add(index, field+suffix, "must match ^[a-z][a-z0-9_]{0,62}$ (lower case letters, digits and '_', starting with a letter)")
	}
}

func checkRef(index int, field string, r Ref, verr *ValidationError) {
	checkNameAt(index, field, ".type", r.Type, verr)
	checkRefIDAt(index, field, ".id", r.ID, verr)
}

// checkRefIDAt checks the reference id at field+suffix.
func checkRefIDAt(index int, field, suffix, id string, verr *ValidationError) {
	switch {
	case id == "":
		verr.add(index, field+suffix, "is required")
	case len(id) > MaxRefIDLen:
		verr.add(index, field+suffix, "is %d bytes; at most %d are allowed", len(id), MaxRefIDLen)
	case !utf8.ValidString(id):
		verr.add(index, field+suffix, "must be valid UTF-8")
	case strings.IndexFunc(id, unicode.IsControl) >= 0: // includes NUL
		verr.add(index, field+suffix, "must not contain control characters")
	}
}

// CheckRef checks r by the rules of an event's references (eventable,
// creator, parents): type ^[a-z][a-z0-9_]{0,62}$, id 1-256 bytes of UTF-8
// without control characters (so no NUL). field names r in the errors:
// "parents[2]" gives "parents[2].type" and "parents[2].id"; "" gives "type"
// and "id". The APIs that store references (webhook parent filters,
// watches) use it, so they refuse exactly what ingest refuses.
func CheckRef(field string, r Ref) []FieldError {
	var verr ValidationError
	prefix := field
	if prefix != "" {
		prefix += "."
	}
	checkNameAt(0, prefix, "type", r.Type, &verr)
	checkRefIDAt(0, prefix, "id", r.ID, &verr)
	return verr.Errors
}

// CheckRefID checks id by the rule of a reference's id (CheckRef), naming
// it field: for ids that refer to objects outside an event, such as a user
// id in a path.
func CheckRefID(field, id string) []FieldError {
	var verr ValidationError
	checkRefIDAt(0, field, "", id, &verr)
	return verr.Errors
}

// ParseTimestamp reads an RFC 3339 timestamp as the contract reads
// occurred_at: "2026-11-25T10:00:00Z" or "2026-11-25T11:00:00.123+01:00",
// upper-case T and Z, any number of fraction digits (nanoseconds kept),
// offsets from -23:59 to +23:59. It refuses what time.Parse would let
// through although RFC 3339 does not allow it ("10:00:00,5Z", "+24:00",
// "+01:60"), so every language's RFC 3339 parser reads it the same.
func ParseTimestamp(s string) (time.Time, bool) {
	if !isRFC3339(s) {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// isRFC3339 checks the shape of an RFC 3339 date-time; time.Parse checks
// the calendar.
func isRFC3339(s string) bool {
	const head = "dddd-dd-ddTdd:dd:dd" // d: a digit
	if len(s) < len(head)+1 {
		return false
	}
	for i := 0; i < len(head); i++ {
		if c := s[i]; (head[i] == 'd' && (c < '0' || c > '9')) || (head[i] != 'd' && c != head[i]) {
			return false
		}
	}
	rest := s[len(head):]
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 {
			return false
		}
		rest = rest[n:]
	}
	if rest == "Z" {
		return true
	}
	if len(rest) != 6 || (rest[0] != '+' && rest[0] != '-') || rest[3] != ':' {
		return false
	}
	for _, i := range []int{1, 2, 4, 5} {
		if rest[i] < '0' || rest[i] > '9' {
			return false
		}
	}
	return rest[1:3] <= "23" && rest[4:6] <= "59"
}

// IsTenant reports whether s is a valid tenant token: ^[a-z0-9][a-z0-9_-]{0,62}$.
func IsTenant(s string) bool {
	if len(s) == 0 || len(s) > MaxTokenLen || !isLowerOrDigit(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLowerOrDigit(c) && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// IsName reports whether s is a valid action or ref type: ^[a-z][a-z0-9_]{0,62}$.
func IsName(s string) bool {
	if len(s) == 0 || len(s) > MaxTokenLen || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLowerOrDigit(c) && c != '_' {
			return false
		}
	}
	return true
}

func isEventID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLowerOrDigit(c) && (c < 'A' || c > 'Z') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isLowerOrDigit(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') }

// isJSONObject reports whether the JSON value raw (valid JSON) is an object.
func isJSONObject(raw []byte) bool {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		default:
			return c == '{'
		}
	}
	return false
}

// IsTraceparent reports whether s is a W3C trace context traceparent:
// version-traceid-parentid-flags in lower-case hex, e.g.
// "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".
func IsTraceparent(s string) bool {
	if len(s) != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i == 2 || i == 35 || i == 52 {
			continue
		}
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return s[:2] != "ff" && s[3:35] != strings.Repeat("0", 32) && s[36:52] != strings.Repeat("0", 16)
}
