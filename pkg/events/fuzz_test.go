package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/eventline/eventline/pkg/events"
)

// FuzzDecode feeds arbitrary bytes to Decode and Normalize. Whatever the
// input, they must not panic; a decoded event must normalize, produce a
// valid subject, encode to JSON and decode back to the same event, and its
// stream body (MarshalInput) must be accepted by ParseStored as the same
// event: what ingest appends, every consumer reads.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"tenant":"a","action":"b","eventable":{"type":"c","id":"d"},"creator":{"type":"e","id":"f"}}`))
	f.Add([]byte(`{"particulars":{"a":[1,2,{"b":null}]},"parents":[null,{}]}`))
	f.Add([]byte(`{"occurred_at":"2026-02-30T25:61:00Z","seq":-1}`))
	f.Add([]byte(`{"tenant":"a","action":"b","eventable":{"type":"c","id":"\ud83d\ude00"},"creator":{"type":"e","id":"f"},"particulars":{"n":[1e131071,1e-16383,"\u00e9"]}}`))
	f.Add([]byte("{\"tenant\":\"a\",\"action\":\"b\",\"eventable\":{\"type\":\"c\",\"id\":\"\xff\"},\"creator\":{\"type\":\"e\",\"id\":\"f\"}}"))
	f.Add([]byte(`{"tenant":"a","action":"b","eventable":{"type":"c","id":"d"},"creator":{"type":"e","id":"f"},"occurred_at":"0001-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := events.Decode(data, 0, now)
		if err != nil {
			var verr *events.ValidationError
			if !errors.As(err, &verr) || len(verr.Errors) == 0 {
				t.Fatalf("decode error is not a ValidationError with errors: %v", err)
			}
			for _, fe := range verr.Errors {
				if fe.Field == "" || fe.Message == "" {
					t.Fatalf("error without field or message: %+v", fe)
				}
			}
			return
		}
		if err := e.Normalize(now); err != nil {
			t.Fatalf("decoded event does not normalize: %v", err)
		}
		if _, err := events.Subject(e.Tenant, e.Eventable.Type, e.Action); err != nil {
			t.Fatalf("decoded event has no valid subject: %v", err)
		}
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var back events.Event
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("unmarshal own encoding %s: %v", b, err)
		}
		if back.ID != e.ID || back.Tenant != e.Tenant || back.Type != e.Type || !back.OccurredAt.Equal(e.OccurredAt) {
			t.Fatalf("round trip changed the event: %+v vs %+v", e, back)
		}
		body, err := e.MarshalInput()
		if err != nil {
			t.Fatalf("marshal input: %v", err)
		}
		subject, _ := events.Subject(e.Tenant, e.Eventable.Type, e.Action)
		got, err := events.ParseStored(events.Message{Subject: subject, Data: body, Seq: 7, Timestamp: now,
			Header: nats.Header{events.HeaderMsgID: []string{events.MsgID(e.Tenant, e.ID)}}})
		if err != nil {
			t.Fatalf("a consumer rejects the stream body %s: %v", body, err)
		}
		again, err := got.MarshalInput()
		if err != nil || !bytes.Equal(again, body) {
			t.Fatalf("a consumer reads another body: %s, not %s (%v)", again, body, err)
		}
		got.Seq, got.Particulars, e.Particulars = 0, nil, nil
		if len(got.Parents) == 0 && len(e.Parents) == 0 {
			got.Parents, e.Parents = nil, nil
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("a consumer reads another event:\n%+v\n%+v", got, e)
		}
	})
}
