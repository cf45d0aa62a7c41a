package events_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/eventline/eventline/pkg/events"
)

// FuzzDecode feeds arbitrary bytes to Decode and Normalize. Whatever the
// input, they must not panic; a decoded event must normalize, produce a
// valid subject, encode to JSON and decode back to the same event.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"tenant":"a","action":"b","eventable":{"type":"c","id":"d"},"creator":{"type":"e","id":"f"}}`))
	f.Add([]byte(`{"particulars":{"a":[1,2,{"b":null}]},"parents":[null,{}]}`))
	f.Add([]byte(`{"occurred_at":"2026-02-30T25:61:00Z","seq":-1}`))
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
	})
}
