package events_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/pkg/events"
)

// stamp is the stream timestamp of the messages in these tests.
var stamp = time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)

const subject = "events.acme.card.closed"

// input is what a producer in any language publishes: the HTTP body.
const input = `{"action":"closed","eventable":{"type":"card","id":"c42"},"creator":{"type":"user","id":"u7"}}`

// fullInput sets every input field, as a producer may.
const fullInput = `{"id":"e1","tenant":"acme","action":"closed","eventable":{"type":"card","id":"c42"},"creator":{"type":"user","id":"u7"},
		"parents":[{"type":"board","id":"b1"}],"particulars":{"n":1},"occurred_at":"2026-11-25T09:00:00.1234567+01:00"}`

// legacyInput is a body older ingest wrote: with recorded_at and type.
const legacyInput = `{"id":"e1","tenant":"acme","action":"closed","eventable":{"type":"card","id":"c42"},"creator":{"type":"user","id":"u7"},
		"parents":[],"particulars":{},"occurred_at":"2026-11-25T09:59:00Z","recorded_at":"2026-11-25T09:59:00.5Z","type":"card.closed"}`

func msg(body string, header ...string) events.Message {
	m := events.Message{Subject: subject, Data: []byte(body), Seq: 42, Timestamp: stamp}
	for i := 0; i+1 < len(header); i += 2 {
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		m.Header.Add(header[i], header[i+1])
	}
	return m
}

func TestParseStoredDerivesSystemFields(t *testing.T) {
	t.Parallel()
	e, err := events.ParseStored(msg(input))
	require.NoError(t, err)
	recorded := time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC)
	require.Equal(t, "acme", e.Tenant, "from the subject")
	require.Equal(t, "card.closed", e.Type)
	require.Equal(t, uint64(42), e.Seq)
	require.Equal(t, recorded, e.RecordedAt, "the stream timestamp, to the microsecond")
	require.Equal(t, recorded, e.OccurredAt, "defaults to recorded_at")
	require.Equal(t, events.StreamEventID(recorded, 42), e.ID)
	require.Equal(t, "01a21225-d97b-71c8-8000-00000000002a", e.ID, "a UUIDv7 of the stream time (ms, then µs) and the sequence")
	require.JSONEq(t, `{}`, string(e.Particulars))
	require.Empty(t, e.Parents)

	again, err := events.ParseStored(msg(input))
	require.NoError(t, err)
	require.Equal(t, e, again, "every consumer derives the same event")
	other := msg(input)
	other.Seq = 43
	third, err := events.ParseStored(other)
	require.NoError(t, err)
	require.NotEqual(t, e.ID, third.ID)
	require.Less(t, e.ID, third.ID, "derived ids sort by stream time and sequence")
}

func TestParseStoredKeepsBodyFields(t *testing.T) {
	t.Parallel()
	body := fullInput
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	e, err := events.ParseStored(msg(body, "Nats-Msg-Id", "acme:e1", "traceparent", tp))
	require.NoError(t, err)
	require.Equal(t, "e1", e.ID)
	require.Equal(t, time.Date(2026, 11, 25, 8, 0, 0, 123456000, time.UTC), e.OccurredAt)
	require.Equal(t, []events.Ref{{Type: "board", ID: "b1"}}, e.Parents)
	require.JSONEq(t, `{"n":1}`, string(e.Particulars))
	require.Equal(t, tp, e.Traceparent)

	e, err = events.ParseStored(msg(body, "traceparent", "junk"))
	require.NoError(t, err)
	require.Empty(t, e.Traceparent, "an invalid traceparent is dropped")
}

// TestParseStoredLegacy: bodies older ingest wrote carry recorded_at and
// type. recorded_at is ignored; type must be the derived one.
func TestParseStoredLegacy(t *testing.T) {
	t.Parallel()
	legacy := legacyInput
	e, err := events.ParseStored(msg(legacy, "Nats-Msg-Id", "acme:e1"))
	require.NoError(t, err)
	require.Equal(t, "e1", e.ID)
	require.Equal(t, time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC), e.RecordedAt, "the stream timestamp wins")

	// A dead letter kept before stream timestamps were recorded.
	noStamp := msg(legacy)
	noStamp.Timestamp = time.Time{}
	e, err = events.ParseStored(noStamp)
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 11, 25, 9, 59, 0, 5e8, time.UTC), e.RecordedAt, "without a stream timestamp the legacy recorded_at is used")

	_, err = events.ParseStored(msg(strings.Replace(legacy, `"type":"card.closed"`, `"type":"card.opened"`, 1)))
	requireRejected(t, err, "type", `is "card.opened" but the event's type is "card.closed"`)
	_, err = events.ParseStored(msg(strings.Replace(legacy, `"type":"card.closed"`, `"type":7`, 1)))
	requireRejected(t, err, "type", "must be a string")
}

// storedRejectCase is a stream message ParseStored rejects, with a field
// and a part of the message of one of its errors.
type storedRejectCase struct {
	name  string
	m     events.Message
	field string
	msg   string
}

// storedRejectCases are the messages TestParseStoredRejects checks; they
// seed FuzzParseStoredFastAgreesWithStrict too.
func storedRejectCases() []storedRejectCase {
	stamped := func(subject string, body string, header ...string) events.Message {
		m := msg(body, header...)
		m.Subject = subject
		return m
	}
	return []storedRejectCase{
		{"bad JSON", msg(`{"action":`), "event", "must be a JSON object"},
		{"empty body", msg(``), "event", "must be a JSON object"},
		{"unknown field, as on HTTP", msg(strings.Replace(input, `{`, `{"board_id":"b1",`, 1)), "board_id", "not a field of an event"},
		{"seq in the body", msg(strings.Replace(input, `{`, `{"seq":1,`, 1)), "seq", "set by the system"},
		{"missing action", msg(`{"eventable":{"type":"card","id":"c42"},"creator":{"type":"user","id":"u7"}}`), "action", "is required"},
		{"body tenant differs from the subject's", msg(strings.Replace(input, `{`, `{"tenant":"globex",`, 1)), "tenant", `is "globex" but the message is on tenant "acme"'s subject`},
		{"subject action differs", stamped("events.acme.card.opened", input), "subject", `belongs on "events.acme.card.closed"`},
		{"subject type differs", stamped("events.acme.board.closed", input), "subject", `belongs on "events.acme.card.closed"`},
		{"short subject", stamped("events.acme", input), "subject", "events.<tenant>.<eventable type>.<action>"},
		{"subject with a bad tenant", stamped("events.Acme.card.closed", input), "subject", "events.<tenant>.<eventable type>.<action>"},
		{"other stream prefix", stamped("orders.acme.card.closed", input), "subject", "events.<tenant>"},
		{"invalid UTF-8, as on HTTP", msg(strings.Replace(input, `"c42"`, "\"c\xff\"", 1)), "eventable.id", "UTF-8"},
		{"unstorable number", msg(strings.Replace(input, `}}`, `},"particulars":{"n":1e999999}}`, 1)), "particulars.n", "1e131072"},
		{"occurred_at zero time", msg(strings.Replace(input, `{`, `{"occurred_at":"0001-01-01T00:00:00Z",`, 1)), "occurred_at", "1970"},
		{"occurred_at 24h after the stream time", msg(strings.Replace(input, `{`, `{"occurred_at":"2026-11-26T10:00:01Z",`, 1)), "occurred_at", "24h in the future"},
		{"Nats-Msg-Id of another tenant", msg(strings.Replace(input, `{`, `{"id":"e1",`, 1), "Nats-Msg-Id", "globex:e1"), "Nats-Msg-Id", `must be "acme:e1"`},
		{"Nats-Msg-Id of another id", msg(strings.Replace(input, `{`, `{"id":"e1",`, 1), "Nats-Msg-Id", "acme:e2"), "Nats-Msg-Id", `must be "acme:e1"`},
		{"Nats-Msg-Id without tenant", msg(strings.Replace(input, `{`, `{"id":"e1",`, 1), "Nats-Msg-Id", "e1"), "Nats-Msg-Id", `must be "acme:e1"`},
		{"Nats-Msg-Id suffix not digits", msg(strings.Replace(input, `{`, `{"id":"e1",`, 1), "Nats-Msg-Id", "acme:e1:x"), "Nats-Msg-Id", `must be "acme:e1"`},
		{"Nats-Msg-Id empty suffix", msg(strings.Replace(input, `{`, `{"id":"e1",`, 1), "Nats-Msg-Id", "acme:e1:"), "Nats-Msg-Id", `must be "acme:e1"`},
		{"Nats-Msg-Id twice", msg(strings.Replace(input, `{`, `{"id":"e1",`, 1), "Nats-Msg-Id", "acme:e1", "Nats-Msg-Id", "acme:e1"), "Nats-Msg-Id", "appears 2 times"},
		{"Nats-Msg-Id but no body id", msg(input, "Nats-Msg-Id", "acme:x1"), "Nats-Msg-Id", `the body has no id; send the id in the body too ("id": "x1")`},
	}
}

func TestParseStoredRejects(t *testing.T) {
	t.Parallel()
	for _, tt := range storedRejectCases() {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := events.ParseStored(tt.m)
			requireRejected(t, err, tt.field, tt.msg)
		})
	}
}

func TestParseStoredAcceptsMsgIDForms(t *testing.T) {
	t.Parallel()
	body := strings.Replace(input, `{`, `{"id":"e1",`, 1)
	for _, id := range []string{"acme:e1", "acme:e1:7", "acme:e1:18446744073709551615"} {
		e, err := events.ParseStored(msg(body, "Nats-Msg-Id", id))
		require.NoError(t, err, id)
		require.Equal(t, "e1", e.ID)
	}
}

// TestParseStoredTransportErrors: a message without its stream metadata is
// not the producer's fault: the error is not a rejection.
func TestParseStoredTransportErrors(t *testing.T) {
	t.Parallel()
	noSeq := msg(input)
	noSeq.Seq = 0
	noStamp := msg(input)
	noStamp.Timestamp = time.Time{}
	for _, m := range []events.Message{noSeq, noStamp} {
		_, err := events.ParseStored(m)
		require.Error(t, err)
		var verr *events.ValidationError
		require.False(t, errors.As(err, &verr), "not a rejection: %v", err)
	}
}

// TestParseStoredAgreesWithDecode: every body HTTP ingest refuses, a
// consumer refuses with the same field and message, and every body it
// accepts, a consumer accepts.
func TestParseStoredAgreesWithDecode(t *testing.T) {
	t.Parallel()
	for _, tt := range rejectCases {
		if strings.Contains(tt.name, "future") || strings.Contains(tt.field, "tenant") || tt.field == "type" || tt.field == "recorded_at" {
			continue // depend on now, the subject's tenant, or are legacy fields on the stream
		}
		m := msg(tt.body)
		m.Timestamp = now
		_, err := events.ParseStored(m)
		requireRejected(t, err, tt.field, tt.msg)
	}
	for _, tt := range acceptCases {
		e, err := events.Decode([]byte(tt.body), 0, now)
		require.NoError(t, err)
		m := msg(tt.body)
		m.Timestamp = now
		m.Subject, err = events.Subject(e.Tenant, e.Eventable.Type, e.Action)
		require.NoError(t, err)
		got, err := events.ParseStored(m)
		require.NoError(t, err, tt.name)
		require.NoError(t, e.Normalize(now))
		if e.ID != got.ID { // an id-less body: each side makes its own
			e.ID = got.ID
		}
		got.Seq = 0
		require.Equal(t, e, got, tt.name)
	}
}

func requireRejected(t *testing.T, err error, field, msg string) {
	t.Helper()
	var verr *events.ValidationError
	require.True(t, errors.As(err, &verr), "want a *ValidationError, got %v", err)
	for _, fe := range verr.Errors {
		require.Equal(t, 0, fe.Index)
		if fe.Field == field && strings.Contains(fe.Message, msg) {
			return
		}
	}
	t.Fatalf("want an error on %q containing %q, got %+v", field, msg, verr.Errors)
}

// TestParseStoredFastPath: the common message takes the fast path and
// gives the strict path's event; what the fast path doubts (legacy fields,
// escapes, a rejection) is left to the strict path.
func TestParseStoredFastPath(t *testing.T) {
	t.Parallel()
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, m := range []events.Message{
		msg(input),
		msg(fullInput, events.HeaderMsgID, "acme:e1", "traceparent", tp),
		msg(fullInput, events.HeaderMsgID, "acme:e1:18446744073709551615"),
		msg(strings.Replace(fullInput, `"parents":[{"type":"board","id":"b1"}]`, `"parents":[]`, 1)),
		msg(strings.Replace(fullInput, `"particulars":{"n":1}`, `"particulars":null`, 1)),
	} {
		fast, ok := events.ParseStoredFast(m)
		require.True(t, ok, "the fast path defers %s", m.Data)
		strict, err := events.ParseStoredStrict(m)
		require.NoError(t, err)
		require.Equal(t, strict, fast)
	}
	for _, m := range []events.Message{
		msg(legacyInput, events.HeaderMsgID, "acme:e1"),
		msg(strings.Replace(input, `"c42"`, `"c\u00e9"`, 1)),
		msg(strings.Replace(input, `"c42"`, `"cé"`, 1)),
		msg(strings.Replace(input, `{`, `{"action":"closed",`, 1)),
		msg(strings.Replace(input, `{`, `{"id":"e1",`, 1), events.HeaderMsgID, "acme:e2"),
		msg(input, events.HeaderMsgID, "acme:x1"),
	} {
		_, ok := events.ParseStoredFast(m)
		require.False(t, ok, "the fast path took %s", m.Data)
	}
	for _, c := range storedRejectCases() {
		_, ok := events.ParseStoredFast(c.m)
		require.False(t, ok, c.name)
	}
}
