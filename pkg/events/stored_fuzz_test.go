package events_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// FuzzParseStoredFastAgreesWithStrict holds ParseStored's fast path to the
// strict one: for any message (subject, body, Nats-Msg-Id header sent 0-3
// times, traceparent, sequence, stream timestamp, 0 for none) ParseStored
// gives what the strict path gives, the same event field for field or the
// same error. The corpus starts from the stored-message tests and the
// bodies of FuzzDecode's corpus.
func FuzzParseStoredFastAgreesWithStrict(f *testing.F) {
	add := func(m events.Message) {
		var ts int64
		if !m.Timestamp.IsZero() {
			ts = m.Timestamp.UnixNano()
		}
		ids := m.Header.Values(events.HeaderMsgID)
		id := ""
		if len(ids) > 0 {
			id = ids[0]
		}
		f.Add(m.Subject, m.Data, id, uint8(len(ids)), m.Header.Get("traceparent"), m.Seq, ts)
	}
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	add(msg(input))
	add(msg(fullInput, events.HeaderMsgID, "acme:e1", "traceparent", tp))
	add(msg(fullInput, events.HeaderMsgID, "acme:e1:7"))
	add(msg(legacyInput, events.HeaderMsgID, "acme:e1"))
	legacy := msg(legacyInput)
	legacy.Timestamp = time.Time{}
	add(legacy)
	for _, c := range storedRejectCases() {
		add(c.m)
	}
	for _, c := range rejectCases {
		add(msg(c.body))
	}
	for _, c := range acceptCases {
		add(msg(c.body))
	}
	for _, body := range testenv.FuzzCorpus(f, "testdata/fuzz") {
		add(msg(string(body)))
	}
	f.Fuzz(func(t *testing.T, subject string, data []byte, msgID string, msgIDs uint8, traceparent string, seq uint64, ts int64) {
		m := events.Message{Subject: subject, Data: data, Seq: seq}
		if ts != 0 {
			m.Timestamp = time.Unix(0, ts)
		}
		if msgIDs%4 > 0 || traceparent != "" {
			m.Header = nats.Header{}
		}
		for range msgIDs % 4 {
			m.Header.Add(events.HeaderMsgID, msgID)
		}
		if traceparent != "" {
			m.Header.Set("traceparent", traceparent)
		}
		got, gotErr := events.ParseStored(m)
		want, wantErr := events.ParseStoredStrict(m)
		switch {
		case (gotErr == nil) != (wantErr == nil):
			t.Fatalf("ParseStored: %v, strict: %v\nmessage %+v", gotErr, wantErr, m)
		case gotErr != nil && gotErr.Error() != wantErr.Error():
			t.Fatalf("ParseStored: %v\nstrict: %v", gotErr, wantErr)
		case !reflect.DeepEqual(got, want):
			t.Fatalf("events differ:\nParseStored %+v\nstrict      %+v\nmessage %+v", got, want, m)
		}
	})
}
