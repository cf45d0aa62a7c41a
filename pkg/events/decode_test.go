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
func with(t *testing.T, field, value string) string {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(valid), &m))
	if value == "" {
		delete(m, field)
	} else {
		m[field] = json.RawMessage(value)
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return string(b)
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
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name  string
		body  string
		field string
		msg   string
	}{
		{"not an object", `[1]`, "event", "must be a JSON object"},
		{"null", `null`, "event", "must be a JSON object"},
		{"syntax", `{"id":`, "event", "must be a JSON object"},
		{"unknown field", with(t, "colour", `"red"`), "colour", "not a field of an event"},
		{"system field seq", with(t, "seq", `1`), "seq", "set by the system"},
		{"system field type", with(t, "type", `"card.closed"`), "type", "set by the system"},
		{"system field recorded_at", with(t, "recorded_at", `"2026-11-25T10:00:00Z"`), "recorded_at", "set by the system"},
		{"id bad chars", with(t, "id", `"a.b"`), "id", "1-64 characters"},
		{"id too long", with(t, "id", `"`+long(65)+`"`), "id", "1-64 characters"},
		{"id not string", with(t, "id", `7`), "id", "must be a string"},
		{"tenant bad", with(t, "tenant", `"Acme"`), "tenant", "must match"},
		{"tenant dot", with(t, "tenant", `"ac.me"`), "tenant", "must match"},
		{"tenant too long", with(t, "tenant", `"`+long(64)+`"`), "tenant", "must match"},
		{"tenant missing", with(t, "tenant", ""), "tenant", "is required"},
		{"action missing", with(t, "action", ""), "action", "is required"},
		{"action wildcard", with(t, "action", `"*"`), "action", "must match"},
		{"action gt", with(t, "action", `">"`), "action", "must match"},
		{"action space", with(t, "action", `"cl osed"`), "action", "must match"},
		{"action upper", with(t, "action", `"Closed"`), "action", "must match"},
		{"action digit first", with(t, "action", `"1closed"`), "action", "must match"},
		{"action too long", with(t, "action", `"`+long(64)+`"`), "action", "must match"},
		{"eventable missing", with(t, "eventable", ""), "eventable.type", "is required"},
		{"eventable not object", with(t, "eventable", `"card"`), "eventable", "must be an object"},
		{"eventable extra", with(t, "eventable", `{"type":"card","id":"c1","x":1}`), "eventable.x", "not a field of a reference"},
		{"eventable type dot", with(t, "eventable", `{"type":"ca.rd","id":"c1"}`), "eventable.type", "must match"},
		{"eventable id empty", with(t, "eventable", `{"type":"card","id":""}`), "eventable.id", "is required"},
		{"eventable id too long", with(t, "eventable", `{"type":"card","id":"`+long(257)+`"}`), "eventable.id", "at most 256"},
		{"eventable id control", with(t, "eventable", `{"type":"card","id":"a\u0007b"}`), "eventable.id", "control characters"},
		{"eventable id newline", with(t, "eventable", `{"type":"card","id":"a\nb"}`), "eventable.id", "control characters"},
		{"creator missing", with(t, "creator", ""), "creator.type", "is required"},
		{"creator id number", with(t, "creator", `{"type":"user","id":7}`), "creator.id", "must be a string"},
		{"parents not array", with(t, "parents", `{}`), "parents", "must be an array"},
		{"parents too many", with(t, "parents", `[`+strings.TrimSuffix(strings.Repeat(`{"type":"board","id":"b"},`, 17), ",")+`]`), "parents", "at most 16"},
		{"parent bad type", with(t, "parents", `[{"type":"board","id":"b"},{"type":"B","id":"x"}]`), "parents[1].type", "must match"},
		{"particulars array", with(t, "particulars", `[1,2]`), "particulars", "must be a JSON object"},
		{"particulars string", with(t, "particulars", `"x"`), "particulars", "must be a JSON object"},
		{"particulars too big", with(t, "particulars", `{"x":"`+long(64<<10)+`"}`), "particulars", "64 KiB"},
		{"occurred_at not time", with(t, "occurred_at", `"yesterday"`), "occurred_at", "RFC 3339"},
		{"occurred_at number", with(t, "occurred_at", `1700000000`), "occurred_at", "RFC 3339"},
		{"occurred_at no zone", with(t, "occurred_at", `"2026-11-25T10:00:00"`), "occurred_at", "RFC 3339"},
		{"occurred_at future", with(t, "occurred_at", `"2026-11-26T10:00:01Z"`), "occurred_at", "24h in the future"},
		{"occurred_at before epoch", with(t, "occurred_at", `"1969-12-31T23:59:59Z"`), "occurred_at", "1970"},
	}
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
	tests := []struct{ name, body string }{
		{"no id", with(t, "id", "")},
		{"null id", with(t, "id", "null")},
		{"id 64", with(t, "id", `"`+strings.Repeat("A", 64)+`"`)},
		{"no parents", with(t, "parents", "")},
		{"empty parents", with(t, "parents", "[]")},
		{"16 parents", with(t, "parents", `[`+strings.TrimSuffix(strings.Repeat(`{"type":"board","id":"b"},`, 16), ",")+`]`)},
		{"no particulars", with(t, "particulars", "")},
		{"null particulars", with(t, "particulars", "null")},
		{"no occurred_at", with(t, "occurred_at", "")},
		{"occurred_at offset", with(t, "occurred_at", `"2026-11-25T11:00:00+02:00"`)},
		{"occurred_at 24h ahead", with(t, "occurred_at", `"2026-11-26T10:00:00Z"`)},
		{"unicode ref id", with(t, "eventable", `{"type":"card","id":"карта-€-🃏"}`)},
		{"ref id 256", with(t, "eventable", `{"type":"card","id":"`+strings.Repeat("x", 256)+`"}`)},
		{"tenant digits and dash", with(t, "tenant", `"0-a_b"`)},
		{"system creator", with(t, "creator", `{"type":"system","id":"webhooker"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := events.Decode([]byte(tt.body), 0, now)
			require.NoError(t, err)
		})
	}
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
	e, err := events.Decode([]byte(with(t, "id", "")), 0, now)
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

func TestParticularsRejectNUL(t *testing.T) {
	t.Parallel()
	_, err := events.Decode([]byte(with(t, "particulars", `{"a":"x\u0000y"}`)), 0, now)
	require.ErrorContains(t, err, "NUL")
}

func TestParseStored(t *testing.T) {
	t.Parallel()
	e, err := events.Decode([]byte(valid), 0, now)
	require.NoError(t, err)
	require.NoError(t, e.Normalize(now))
	body, err := json.Marshal(e)
	require.NoError(t, err)

	got, err := events.ParseStored("events.acme.card.closed", body, 42)
	require.NoError(t, err)
	require.Equal(t, uint64(42), got.Seq)
	require.Equal(t, e.ID, got.ID)
	require.Equal(t, e.OccurredAt, got.OccurredAt)

	_, err = events.ParseStored("events.globex.card.closed", body, 42)
	require.ErrorContains(t, err, "subject")
	_, err = events.ParseStored("events.acme.card.closed", []byte(`{"id":`), 1)
	require.Error(t, err)
	_, err = events.ParseStored("events.acme.card.closed", []byte(`{"id":"x","tenant":"acme"}`), 1)
	require.Error(t, err)
	bad := strings.Replace(string(body), `"action":"closed"`, `"action":"Closed"`, 1)
	_, err = events.ParseStored("events.acme.card.closed", []byte(bad), 1)
	require.Error(t, err)
}
