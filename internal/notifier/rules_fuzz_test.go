package notifier

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/eventline/eventline/pkg/events"
)

// FuzzRules: no input panics; invalid input yields named errors; a valid
// rule set survives a round trip and resolves any event without panicking.
func FuzzRules(f *testing.F) {
	def, _ := json.Marshal(DefaultRules())
	f.Add(def)
	f.Add([]byte(`{"rules": []}`))
	f.Add([]byte(`{"rules": [{"event": "*", "group": "card", "notify": {"watchers_of": ["eventable", "board"], "user_ids_in": ["a", "b"]}, "watch": {"creator": true}}]}`))
	f.Add([]byte(`{"rules": [{"event": "card", "notify": {"creator": true, "watchers_of": ["x", "x"]}}]}`))
	f.Add([]byte(`{"rules": [{"event": "card.closed", "notify": {"watchers_off": []}}]} trailing`))
	f.Add([]byte(`{"rules": [{"event": 1}]}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ParseRules(data)
		if err != nil {
			var verr *events.ValidationError
			if !errors.As(err, &verr) || len(verr.Errors) == 0 {
				t.Fatalf("error is not a named validation error: %v", err)
			}
			for _, e := range verr.Errors {
				if e.Field == "" || e.Message == "" || e.Index < 0 || e.Index >= max(1, MaxRules) {
					t.Fatalf("bad field error %+v", e)
				}
			}
			return
		}
		again, err := json.Marshal(rs)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseRules(again); err != nil {
			t.Fatalf("valid rules do not re-parse: %v\n%s", err, again)
		}
		e := &events.Event{Tenant: "acme", ID: "e1", Action: "created", Type: "comment.created",
			Eventable: events.Ref{Type: "comment", ID: "cm1"}, Creator: events.Ref{Type: "user", ID: "u1"},
			Parents: []events.Ref{{Type: "card", ID: "c1"}}, Particulars: json.RawMessage(`{"a": "u2", "b": ["u3", 4, "u1"]}`)}
		if r, ok := rs.Match(e.Type); ok {
			out := r.Resolve(e, &watcherSet{tenant: "acme", m: map[watchKey][]string{{"acme", events.Ref{Type: "card", ID: "c1"}}: {"u1", "u4"}}})
			for _, u := range out.Recipients {
				if u == "u1" {
					t.Fatal("the creator was notified")
				}
			}
		}
	})
}
