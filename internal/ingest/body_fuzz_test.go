package ingest

import (
	"testing"
	"time"

	"github.com/eventline/eventline/pkg/events"
)

// FuzzParseBody feeds arbitrary request bodies to the ingest parser: it must
// never panic, must either reject with named fields or accept 1..1000
// normalized events of the key's tenant with unique ids.
func FuzzParseBody(f *testing.F) {
	f.Add([]byte(`{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}}`))
	f.Add([]byte(`{"events":[{"id":"a","action":"x","eventable":{"type":"t","id":"1"},"creator":{"type":"u","id":"2"}},{"id":"a"}]}`))
	f.Add([]byte(`{"events":[]}`))
	f.Add([]byte(`{"events":null,"x":1}`))
	f.Add([]byte(`  [ ]`))
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		es, errs := parseBody(body, "acme", now)
		if len(errs) > 0 {
			for _, fe := range errs {
				if fe.Field == "" || fe.Message == "" {
					t.Fatalf("error without a field or message: %+v", fe)
				}
			}
			return
		}
		if len(es) == 0 || len(es) > MaxEventsPerRequest {
			t.Fatalf("accepted %d events", len(es))
		}
		ids := map[string]bool{}
		for _, e := range es {
			if e.Tenant != "acme" || ids[e.ID] || e.Type != events.TypeOf(e.Eventable.Type, e.Action) {
				t.Fatalf("accepted a bad event: %+v", e)
			}
			ids[e.ID] = true
			again := e
			if err := again.Normalize(now); err != nil {
				t.Fatalf("accepted event does not validate: %v", err)
			}
		}
	})
}
