package testenv

import (
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/pkg/events"
)

// StorableInput is the input of the differential fuzz targets that check
// "accepted means storable" against the real read-model tables
// (FuzzAccepted; FuzzAcceptedIsStorable in the projector and the
// notifier): the parts of
// an event where Postgres can refuse what JSON allows. Body pastes them
// into an HTTP body byte for byte, so invalid UTF-8, broken escapes and odd
// numbers reach the validation unchanged.
type StorableInput struct {
	ID, EventableID, ParentID string
	Particulars               []byte
	OccurredAt                string
}

// Body is the HTTP body of one event made of in; an empty part is left out.
func (in StorableInput) Body() []byte {
	var b strings.Builder
	b.WriteString(`{"action":"closed","eventable":{"type":"card","id":"` + in.EventableID + `"},"creator":{"type":"user","id":"u1"}`)
	if in.ID != "" {
		b.WriteString(`,"id":"` + in.ID + `"`)
	}
	if in.ParentID != "" {
		b.WriteString(`,"parents":[{"type":"board","id":"` + in.ParentID + `"}]`)
	}
	if len(in.Particulars) > 0 {
		b.WriteString(`,"particulars":` + string(in.Particulars))
	}
	if in.OccurredAt != "" {
		b.WriteString(`,"occurred_at":"` + in.OccurredAt + `"`)
	}
	b.WriteString("}")
	return []byte(b.String())
}

// StorableSeeds are the seeds of the differential fuzz targets: the edges
// of what PostgreSQL's text, jsonb and numeric accept.
func StorableSeeds() []StorableInput {
	return []StorableInput{
		{EventableID: "c1", Particulars: []byte(`{"title":"Zoë","n":1.5,"tags":["a","b"],"nested":{"x":null,"y":true}}`)},
		{ID: "e-1", EventableID: "карта €", ParentID: "b1", OccurredAt: "2026-11-25T09:00:00.123456789+01:00"},
		{EventableID: `\ud83c\udccf`, ParentID: "\u00e9", Particulars: []byte(`{"emoji":"\ud83d\ude00","esc":"\"\\\/\b\f\n\r\t"}`)},
		{EventableID: "c1", Particulars: []byte(`{"big":9.999e131071,"neg":-1e131071,"small":1e-16383,"half":0.5e-16382,"zero":0e1073741822,"zeroes":0.000e0}`)},
		{EventableID: "c1", Particulars: []byte(`{"long":` + strings.Repeat("9", 1000) + `.` + strings.Repeat("1", 16383) + `}`)},
		{EventableID: "c1", Particulars: []byte(`{"a":` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}`)},
		{EventableID: "c1", Particulars: []byte(`{"a":` + strings.Repeat(`{"b":`, 62) + `1` + strings.Repeat("}", 62) + `}`)},
		{EventableID: "c1", Particulars: []byte(`{"n":1e131072}`)},
		{EventableID: "c1", Particulars: []byte(`{"n":0e-16384,"s":"\ud800"}`)},
		{EventableID: "c\xff", Particulars: []byte("{\"k\xc3\":\"\xed\xa0\x80\"}")},
		{EventableID: "c1", Particulars: []byte(`{"\u0000":"\u0000"}`), OccurredAt: "0001-01-01T00:00:00Z"},
		{EventableID: "c1", OccurredAt: "1970-01-01T00:00:00Z", Particulars: []byte(`{"\uffff\ufffe":"\u007f\u0080\u009f"}`)},
	}
}

// FuzzAccepted runs a differential "accepted means storable" fuzz target:
// it seeds f with StorableSeeds, makes a body of each input
// (StorableInput.Body) and calls store with every event ingest accepts, as
// a consumer reads it back from the stream (received and stored at one
// fixed time). store fails t when the read model cannot hold the event.
func FuzzAccepted(f *testing.F, store func(t *testing.T, e events.Event, body []byte)) {
	for _, s := range StorableSeeds() {
		f.Add(s.ID, s.EventableID, s.ParentID, s.Particulars, s.OccurredAt)
	}
	now := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	f.Fuzz(func(t *testing.T, id, eventableID, parentID string, particulars []byte, occurredAt string) {
		body := StorableInput{ID: id, EventableID: eventableID, ParentID: parentID, Particulars: particulars, OccurredAt: occurredAt}.Body()
		e, ok, reject := acceptedEvent(body, now)
		if !ok {
			return
		}
		if reject != nil {
			t.Fatalf("ingest accepts %q but a consumer rejects it: %v", body, reject)
		}
		store(t, e, body)
	})
}

// acceptedEvent runs body through ingest's validation (DecodeForTenant and
// Normalize for tenant acme at now), then through the stream as a consumer
// reads it (MarshalInput, ParseStored with the message stored at now, seq
// 1). ok is false when ingest rejects the body; a body ingest accepts that
// a consumer rejects is reported as reject.
func acceptedEvent(body []byte, now time.Time) (e events.Event, ok bool, reject error) {
	e, err := events.DecodeForTenant(body, 0, "acme", now)
	if err == nil {
		err = e.Normalize(now)
	}
	if err != nil {
		return events.Event{}, false, nil
	}
	data, err := e.MarshalInput()
	if err != nil {
		return events.Event{}, true, err
	}
	subject, err := events.Subject(e.Tenant, e.Eventable.Type, e.Action)
	if err != nil {
		return events.Event{}, true, err
	}
	stored, err := events.ParseStored(events.Message{Subject: subject, Data: data, Seq: 1, Timestamp: now})
	return stored, true, err
}
