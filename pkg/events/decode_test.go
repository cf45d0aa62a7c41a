package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/pkg/events"
)

var now = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

const valid = `{"id":"e1","tenant":"acme","action":"closed","eventable":{"type":"card","id":"c42"},
	"creator":{"type":"user","id":"u7"},"parents":[{"type":"board","id":"b1"}],
	"particulars":{"column":"Done"},"occurred_at":"2026-11-25T09:59:00.123Z"}`

// with returns the valid event with one top-level field replaced (or
// removed, when value is "").
func with(field, value string) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(valid), &m); err != nil {
		panic(err)
	}
	if value == "" {
		delete(m, field)
	} else {
		m[field] = json.RawMessage(value)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// withRaw is with for values json.Marshal would rewrite (invalid UTF-8):
// it replaces the valid event's text old with new, byte for byte.
func withRaw(old, new string) string {
	if !strings.Contains(valid, old) {
		panic("valid has no " + old)
	}
	return strings.Replace(valid, old, new, 1)
}

// nested returns particulars whose field a holds depth nested arrays.
func nested(depth int) string {
	return `{"a":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
}

// decodeCase is one body Decode must reject, with the field and a part of
// the message it must report.
type decodeCase struct {
	name  string
	body  string
	field string
	msg   string
}

func long(n int) string { return strings.Repeat("a", n) }

// rejectCases are the bodies Decode rejects; the schema agreement test
// (docs/schema) runs them too.
var rejectCases = []decodeCase{
	{"not an object", `[1]`, "event", "must be a JSON object"},
	{"null", `null`, "event", "must be a JSON object"},
	{"syntax", `{"id":`, "event", "must be a JSON object"},
	{"unknown field", with("colour", `"red"`), "colour", "not a field of an event"},
	{"system field seq", with("seq", `1`), "seq", "set by the system"},
	{"system field type", with("type", `"card.closed"`), "type", "set by the system"},
	{"system field recorded_at", with("recorded_at", `"2026-11-25T10:00:00Z"`), "recorded_at", "set by the system"},
	{"id bad chars", with("id", `"a.b"`), "id", "1-64 characters"},
	{"id too long", with("id", `"`+long(65)+`"`), "id", "1-64 characters"},
	{"id not string", with("id", `7`), "id", "must be a string"},
	{"id NUL", with("id", `"a\u0000"`), "id", "NUL"},
	{"id invalid UTF-8", withRaw(`"id":"e1"`, "\"id\":\"e\xff1\""), "id", "UTF-8"},
	{"tenant bad", with("tenant", `"Acme"`), "tenant", "must match"},
	{"tenant dot", with("tenant", `"ac.me"`), "tenant", "must match"},
	{"tenant too long", with("tenant", `"`+long(64)+`"`), "tenant", "must match"},
	{"tenant missing", with("tenant", ""), "tenant", "is required"},
	{"action missing", with("action", ""), "action", "is required"},
	{"action wildcard", with("action", `"*"`), "action", "must match"},
	{"action gt", with("action", `">"`), "action", "must match"},
	{"action space", with("action", `"cl osed"`), "action", "must match"},
	{"action upper", with("action", `"Closed"`), "action", "must match"},
	{"action digit first", with("action", `"1closed"`), "action", "must match"},
	{"action too long", with("action", `"`+long(64)+`"`), "action", "must match"},
	{"action invalid UTF-8", withRaw(`"action":"closed"`, "\"action\":\"clo\xc3sed\""), "action", "UTF-8"},
	{"eventable missing", with("eventable", ""), "eventable.type", "is required"},
	{"eventable not object", with("eventable", `"card"`), "eventable", "must be an object"},
	{"eventable extra", with("eventable", `{"type":"card","id":"c1","x":1}`), "eventable.x", "not a field of a reference"},
	{"eventable type dot", with("eventable", `{"type":"ca.rd","id":"c1"}`), "eventable.type", "must match"},
	{"eventable id empty", with("eventable", `{"type":"card","id":""}`), "eventable.id", "is required"},
	{"eventable id too long", with("eventable", `{"type":"card","id":"`+long(257)+`"}`), "eventable.id", "at most 256"},
	{"eventable id 257 bytes in 129 characters", with("eventable", `{"type":"card","id":"`+strings.Repeat("é", 128)+`x"}`), "eventable.id", "at most 256"},
	{"eventable id control", with("eventable", `{"type":"card","id":"a\u0007b"}`), "eventable.id", "control characters"},
	{"eventable id C1 control", with("eventable", `{"type":"card","id":"a\u0085b"}`), "eventable.id", "control characters"},
	{"eventable id newline", with("eventable", `{"type":"card","id":"a\nb"}`), "eventable.id", "control characters"},
	{"eventable id NUL", with("eventable", `{"type":"card","id":"\u0000"}`), "eventable.id", "NUL"},
	{"eventable id invalid UTF-8", withRaw(`"id":"c42"`, "\"id\":\"c\xff\""), "eventable.id", "UTF-8"},
	{"eventable id overlong UTF-8", withRaw(`"id":"c42"`, "\"id\":\"c\xc0\xaf\""), "eventable.id", "UTF-8"},
	{"eventable id UTF-8 surrogate", withRaw(`"id":"c42"`, "\"id\":\"c\xed\xa0\x80\""), "eventable.id", "UTF-8"},
	{"eventable id lone surrogate", with("eventable", `{"type":"card","id":"c\ud800"}`), "eventable.id", "high surrogate"},
	{"creator missing", with("creator", ""), "creator.type", "is required"},
	{"creator id number", with("creator", `{"type":"user","id":7}`), "creator.id", "must be a string"},
	{"creator id invalid UTF-8", withRaw(`"id":"u7"`, "\"id\":\"\xfe\""), "creator.id", "UTF-8"},
	{"parents not array", with("parents", `{}`), "parents", "must be an array"},
	{"parents too many", with("parents", `[`+strings.TrimSuffix(strings.Repeat(`{"type":"board","id":"b"},`, 17), ",")+`]`), "parents", "at most 16"},
	{"parent bad type", with("parents", `[{"type":"board","id":"b"},{"type":"B","id":"x"}]`), "parents[1].type", "must match"},
	{"parent id NUL", with("parents", `[{"type":"board","id":"\u0000"}]`), "parents[0].id", "NUL"},
	{"parent id newline", with("parents", `[{"type":"board","id":"a\nb"}]`), "parents[0].id", "control characters"},
	{"parent id low surrogate", with("parents", `[{"type":"board","id":"b"},{"type":"board","id":"\udc00"}]`), "parents[1].id", "low surrogate"},
	{"particulars array", with("particulars", `[1,2]`), "particulars", "must be a JSON object"},
	{"particulars string", with("particulars", `"x"`), "particulars", "must be a JSON object"},
	{"particulars too big", with("particulars", `{"x":"`+long(64<<10)+`"}`), "particulars", "64 KiB"},
	{"particulars NUL", with("particulars", `{"a":"x\u0000y"}`), "particulars.a", "NUL"},
	{"particulars key NUL", with("particulars", `{"a\u0000":1}`), `particulars["a\u0000"]`, "key must not contain the NUL"},
	{"particulars key invalid UTF-8", withRaw(`"column"`, "\"col\xffumn\""), `particulars["col\xffumn"]`, "key is not valid UTF-8"},
	{"particulars invalid UTF-8", withRaw(`"Done"`, "\"Do\xffne\""), "particulars.column", "UTF-8"},
	{"particulars truncated UTF-8", withRaw(`"Done"`, "\"Done\xe2\x82\""), "particulars.column", "UTF-8"},
	{"particulars lone high surrogate", with("particulars", `{"a":"\ud800"}`), "particulars.a", "high surrogate"},
	{"particulars high surrogate then text", with("particulars", `{"a":"\ud83dx"}`), "particulars.a", "high surrogate"},
	{"particulars high then high", with("particulars", `{"a":"\ud83d\ud83d"}`), "particulars.a", "high surrogate"},
	{"particulars lone low surrogate", with("particulars", `{"a":"\udfff"}`), "particulars.a", "low surrogate"},
	{"particulars misordered surrogates", with("particulars", `{"a":"\ude00\ud83d"}`), "particulars.a", "low surrogate"},
	{"particulars nested path", with("particulars", `{"items":[1,2,3,{"n":1e999999}]}`), "particulars.items[3].n", "1e131072"},
	{"particulars number 1e131072", with("particulars", `{"n":1e131072}`), "particulars.n", "1e131072"},
	{"particulars number -1e131072", with("particulars", `{"n":-1E+131072}`), "particulars.n", "1e131072"},
	{"particulars number 10e131071", with("particulars", `{"n":10e131071}`), "particulars.n", "1e131072"},
	{"particulars number 1e-16384", with("particulars", `{"n":1e-16384}`), "particulars.n", "decimal point"},
	{"particulars number 1e-999999", with("particulars", `{"n":1e-999999}`), "particulars.n", "decimal point"},
	{"particulars number 1.0e-16383", with("particulars", `{"n":1.0e-16383}`), "particulars.n", "decimal point"},
	{"particulars zero 0e-16384", with("particulars", `{"n":0e-16384}`), "particulars.n", "decimal point"},
	{"particulars zero with exponent 2^30-1", with("particulars", `{"n":0e1073741823}`), "particulars.n", "exponent"},
	{"particulars huge exponent", with("particulars", `{"n":[0,1e99999999999999999999]}`), "particulars.n[1]", "exponent"},
	{"particulars 16384 decimals", with("particulars", `{"n":0.`+strings.Repeat("0", 16383)+`1}`), "particulars.n", "decimal point"},
	{"particulars key path", with("particulars", `{"a b":{"c":"\u0000"}}`), `particulars["a b"].c`, "NUL"},
	{"particulars too deep", with("particulars", nested(63)), "particulars.a" + strings.Repeat("[0]", 62), "deeper than 64"},
	{"occurred_at not time", with("occurred_at", `"yesterday"`), "occurred_at", "RFC 3339"},
	{"occurred_at number", with("occurred_at", `1700000000`), "occurred_at", "RFC 3339"},
	{"occurred_at no zone", with("occurred_at", `"2026-11-25T10:00:00"`), "occurred_at", "RFC 3339"},
	{"occurred_at lower-case t", with("occurred_at", `"2026-11-25t10:00:00Z"`), "occurred_at", "RFC 3339"},
	{"occurred_at leap second", with("occurred_at", `"2016-12-31T23:59:60Z"`), "occurred_at", "RFC 3339"},
	{"occurred_at February 30", with("occurred_at", `"2026-02-30T10:00:00Z"`), "occurred_at", "RFC 3339"},
	{"occurred_at decimal comma", with("occurred_at", `"2026-11-25T10:00:00,5Z"`), "occurred_at", "RFC 3339"},
	{"occurred_at offset +24:00", with("occurred_at", `"2026-11-25T10:00:00+24:00"`), "occurred_at", "RFC 3339"},
	{"occurred_at offset minute 60", with("occurred_at", `"2026-11-25T10:00:00+01:60"`), "occurred_at", "RFC 3339"},
	{"occurred_at offset without colon", with("occurred_at", `"2026-11-25T10:00:00+0100"`), "occurred_at", "RFC 3339"},
	{"occurred_at empty fraction", with("occurred_at", `"2026-11-25T10:00:00.Z"`), "occurred_at", "RFC 3339"},
	{"occurred_at hour 24", with("occurred_at", `"2026-11-25T24:00:00Z"`), "occurred_at", "RFC 3339"},
	{"occurred_at empty", with("occurred_at", `""`), "occurred_at", "RFC 3339"},
	{"occurred_at future", with("occurred_at", `"2026-11-26T10:00:01Z"`), "occurred_at", "24h in the future"},
	{"occurred_at before epoch", with("occurred_at", `"1969-12-31T23:59:59Z"`), "occurred_at", "1970"},
	{"occurred_at zero time", with("occurred_at", `"0001-01-01T00:00:00Z"`), "occurred_at", "1970"},
	{"occurred_at before epoch by offset", with("occurred_at", `"1970-01-01T00:30:00+01:00"`), "occurred_at", "1970"},
}

// acceptCases are bodies Decode accepts.
var acceptCases = []struct{ name, body string }{
	{"valid", valid},
	{"no id", with("id", "")},
	{"null id", with("id", "null")},
	{"id 64", with("id", `"`+strings.Repeat("A", 64)+`"`)},
	{"no parents", with("parents", "")},
	{"empty parents", with("parents", "[]")},
	{"16 parents", with("parents", `[`+strings.TrimSuffix(strings.Repeat(`{"type":"board","id":"b"},`, 16), ",")+`]`)},
	{"no particulars", with("particulars", "")},
	{"null particulars", with("particulars", "null")},
	{"no occurred_at", with("occurred_at", "")},
	{"occurred_at offset", with("occurred_at", `"2026-11-25T11:00:00+02:00"`)},
	{"occurred_at 24h ahead", with("occurred_at", `"2026-11-26T10:00:00Z"`)},
	{"occurred_at epoch", with("occurred_at", `"1970-01-01T00:00:00Z"`)},
	{"occurred_at epoch with offset", with("occurred_at", `"1970-01-01T01:00:00+01:00"`)},
	{"occurred_at nanoseconds", with("occurred_at", `"2026-11-25T09:59:00.123456789Z"`)},
	{"occurred_at twelve fraction digits", with("occurred_at", `"2026-11-25T09:59:00.123456789012Z"`)},
	{"occurred_at offset -23:59", with("occurred_at", `"2026-11-25T09:59:00-23:59"`)},
	{"occurred_at offset -00:00", with("occurred_at", `"2026-11-25T09:59:00-00:00"`)},
	{"empty id is no id", with("id", `""`)},
	{"unicode ref id", with("eventable", `{"type":"card","id":"карта-€-🃏"}`)},
	{"escaped surrogate pair in ref id", with("eventable", `{"type":"card","id":"\ud83c\udccf"}`)},
	{"U+FFFD in ref id", with("eventable", `{"type":"card","id":"\ufffd"}`)},
	{"ref id 256", with("eventable", `{"type":"card","id":"`+strings.Repeat("x", 256)+`"}`)},
	{"ref id 256 bytes in 128 characters", with("eventable", `{"type":"card","id":"`+strings.Repeat("é", 128)+`"}`)},
	{"tenant digits and dash", with("tenant", `"0-a_b"`)},
	{"system creator", with("creator", `{"type":"system","id":"webhooker"}`)},
	{"particulars surrogate pair", with("particulars", `{"emoji":"\ud83d\ude00","text":"Zoë \u00e9\/"}`)},
	{"particulars escaped key", with("particulars", `{"\u0061b":1,"":2}`)},
	{"particulars largest number", with("particulars", `{"n":9.999e131071,"m":-1e131071}`)},
	{"particulars smallest numbers", with("particulars", `{"n":1e-16383,"m":0.5e-16382,"z":0e999999,"y":0e1073741822}`)},
	{"particulars 16383 decimals", with("particulars", `{"n":0.`+strings.Repeat("0", 16382)+`1}`)},
	{"particulars long integer", with("particulars", `{"n":`+strings.Repeat("9", 5000)+`}`)},
	{"particulars deepest", with("particulars", nested(62))},
	{"particulars null values", with("particulars", `{"a":null,"b":true,"c":false,"d":[],"e":{}}`)},
}

func TestDecodeValid(t *testing.T) {
	t.Parallel()
	e, err := events.Decode([]byte(valid), 0, now)
	require.NoError(t, err)
	require.Equal(t, "e1", e.ID)
	require.Equal(t, events.Ref{Type: "card", ID: "c42"}, e.Eventable)
	require.Equal(t, []events.Ref{{Type: "board", ID: "b1"}}, e.Parents)
	require.JSONEq(t, `{"column":"Done"}`, string(e.Particulars))
	require.Equal(t, time.Date(2026, 11, 25, 9, 59, 0, 123e6, time.UTC), e.OccurredAt)
	require.True(t, e.RecordedAt.IsZero(), "decode does not fill system fields")
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	tests := rejectCases
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := events.Decode([]byte(tt.body), 3, now)
			var verr *events.ValidationError
			require.True(t, errors.As(err, &verr), "want a *ValidationError, got %v", err)
			var found bool
			for _, fe := range verr.Errors {
				require.Equal(t, 3, fe.Index)
				if fe.Field == tt.field && strings.Contains(fe.Message, tt.msg) {
					found = true
				}
			}
			require.True(t, found, "want an error on %q containing %q, got %+v", tt.field, tt.msg, verr.Errors)
		})
	}
}

func TestDecodeAccepts(t *testing.T) {
	t.Parallel()
	tests := acceptCases
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := events.Decode([]byte(tt.body), 0, now)
			require.NoError(t, err)
		})
	}
}

func TestDecodeForTenant(t *testing.T) {
	t.Parallel()
	for _, body := range []string{with("tenant", ""), with("tenant", `""`), with("tenant", "null"), with("tenant", `"acme"`)} {
		e, err := events.DecodeForTenant([]byte(body), 0, "acme", now)
		require.NoError(t, err, body)
		require.Equal(t, "acme", e.Tenant)
	}
	_, err := events.DecodeForTenant([]byte(with("tenant", `"globex"`)), 2, "acme", now)
	var verr *events.ValidationError
	require.ErrorAs(t, err, &verr)
	require.Equal(t, []events.FieldError{{Index: 2, Field: "tenant", Message: `is "globex" but the API key belongs to tenant "acme"; omit the field or send "acme"`}}, verr.Errors)
}

func TestDecodeReportsEveryError(t *testing.T) {
	t.Parallel()
	_, err := events.Decode([]byte(`{"action":"X","eventable":{"type":"card"},"seq":3,"zzz":1}`), 0, now)
	var verr *events.ValidationError
	require.ErrorAs(t, err, &verr)
	var fields []string
	for _, fe := range verr.Errors {
		fields = append(fields, fe.Field)
	}
	require.ElementsMatch(t, []string{"seq", "zzz", "tenant", "action", "eventable.id", "creator.type", "creator.id"}, fields)
}

func TestNormalizeFillsSystemFields(t *testing.T) {
	t.Parallel()
	e, err := events.Decode([]byte(with("id", "")), 0, now)
	require.NoError(t, err)
	e.OccurredAt = time.Time{}
	e.Particulars = nil
	require.NoError(t, e.Normalize(now))
	require.Len(t, e.ID, 36, "a UUID")
	require.Equal(t, byte('7'), e.ID[14], "a UUIDv7")
	require.Equal(t, "card.closed", e.Type)
	require.Equal(t, now, e.OccurredAt)
	require.Equal(t, now, e.RecordedAt)
	require.JSONEq(t, `{}`, string(e.Particulars))

	again := e
	require.NoError(t, again.Normalize(now.Add(time.Hour)))
	require.Equal(t, e, again, "normalizing twice changes nothing")
}

func TestNormalizeInvalidLeavesEventUnchanged(t *testing.T) {
	t.Parallel()
	e := events.Event{Tenant: "acme", Action: "Bad"}
	before := e
	err := e.Normalize(now)
	var verr *events.ValidationError
	require.ErrorAs(t, err, &verr)
	require.Equal(t, before, e)
}

func TestMarshalWireForm(t *testing.T) {
	t.Parallel()
	e, err := events.Decode([]byte(valid), 0, now)
	require.NoError(t, err)
	require.NoError(t, e.Normalize(now))
	b, err := json.Marshal(e)
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"e1","tenant":"acme","action":"closed","eventable":{"type":"card","id":"c42"},
		"creator":{"type":"user","id":"u7"},"parents":[{"type":"board","id":"b1"}],"particulars":{"column":"Done"},
		"occurred_at":"2026-11-25T09:59:00.123Z","recorded_at":"2026-11-25T10:00:00Z","type":"card.closed"}`, string(b))

	var back events.Event
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, e.OccurredAt, back.OccurredAt)
	require.Equal(t, e.ID, back.ID)

	e.Seq = 1234
	b, err = json.Marshal(e)
	require.NoError(t, err)
	require.Contains(t, string(b), `"seq":1234`)
}

func TestNormalizeTruncatesToMicroseconds(t *testing.T) {
	t.Parallel()
	e := events.Event{Tenant: "acme", Action: "closed", Eventable: events.Ref{Type: "card", ID: "c1"}, Creator: events.Ref{Type: "user", ID: "u1"},
		OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 3600))}
	require.NoError(t, e.Normalize(now.Add(987)))
	require.Equal(t, time.Date(2026, 1, 2, 2, 4, 5, 123456000, time.UTC), e.OccurredAt)
	require.Equal(t, now, e.RecordedAt)
}

func TestIsTraceparent(t *testing.T) {
	t.Parallel()
	require.True(t, events.IsTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	for _, bad := range []string{
		"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\n",
	} {
		require.False(t, events.IsTraceparent(bad), bad)
	}
}

func TestNormalizeRejectsWhatCannotBeStored(t *testing.T) {
	t.Parallel()
	base := func() events.Event {
		return events.Event{Tenant: "acme", Action: "closed", Eventable: events.Ref{Type: "card", ID: "c1"}, Creator: events.Ref{Type: "user", ID: "u1"}}
	}
	tests := []struct {
		name   string
		change func(*events.Event)
		field  string
		msg    string
	}{
		{"particulars number", func(e *events.Event) { e.Particulars = []byte(`{"a":[{"n":1e999999}]}`) }, "particulars.a[0].n", "1e131072"},
		{"particulars lone surrogate", func(e *events.Event) { e.Particulars = []byte(`{"s":"\ud800"}`) }, "particulars.s", "surrogate"},
		{"particulars invalid UTF-8", func(e *events.Event) { e.Particulars = []byte("{\"s\":\"\xff\"}") }, "particulars.s", "UTF-8"},
		{"particulars not JSON", func(e *events.Event) { e.Particulars = []byte(`{"s":`) }, "particulars", "JSON object"},
		{"particulars too deep", func(e *events.Event) { e.Particulars = []byte(nested(63)) }, "particulars.a" + strings.Repeat("[0]", 62), "deeper"},
		{"eventable id invalid UTF-8", func(e *events.Event) { e.Eventable.ID = "c\xff" }, "eventable.id", "UTF-8"},
		{"parent id NUL", func(e *events.Event) { e.Parents = []events.Ref{{Type: "board", ID: "\x00"}} }, "parents[0].id", "control"},
		{"occurred_at before 1970", func(e *events.Event) { e.OccurredAt = time.Unix(-1, 0) }, "occurred_at", "1970"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := base()
			tt.change(&e)
			var verr *events.ValidationError
			require.ErrorAs(t, e.Normalize(now), &verr)
			require.Len(t, verr.Errors, 1, "%+v", verr.Errors)
			require.Equal(t, tt.field, verr.Errors[0].Field)
			require.Contains(t, verr.Errors[0].Message, tt.msg)
		})
	}
}

// TestMarshalInput: the stream body is the input form, which Decode
// accepts as it is.
func TestMarshalInput(t *testing.T) {
	t.Parallel()
	e, err := events.Decode([]byte(valid), 0, now)
	require.NoError(t, err)
	require.NoError(t, e.Normalize(now))
	b, err := e.MarshalInput()
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"e1","tenant":"acme","action":"closed","eventable":{"type":"card","id":"c42"},
		"creator":{"type":"user","id":"u7"},"parents":[{"type":"board","id":"b1"}],"particulars":{"column":"Done"},
		"occurred_at":"2026-11-25T09:59:00.123Z"}`, string(b))
	back, err := events.Decode(b, 0, now)
	require.NoError(t, err)
	require.NoError(t, back.Normalize(now))
	require.Equal(t, e, back)

	bare, err := events.Event{Tenant: "acme", Action: "closed", Eventable: events.Ref{Type: "card", ID: "c1"}, Creator: events.Ref{Type: "user", ID: "u1"}}.MarshalInput()
	require.NoError(t, err)
	require.JSONEq(t, `{"tenant":"acme","action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"},"parents":[],"particulars":{}}`, string(bare))
}
