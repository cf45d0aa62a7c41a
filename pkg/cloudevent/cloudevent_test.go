package cloudevent_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/eventline/eventline/pkg/cloudevent"
	"github.com/eventline/eventline/pkg/events"
)

// TestMarshalThenToInput: an event written as a CloudEvent and read back
// is the same event (but for what eventline derives).
func TestMarshalThenToInput(t *testing.T) {
	e := events.Event{ID: "e1", Tenant: "acme", Action: "closed", Type: "card.closed", Seq: 7,
		Eventable: events.Ref{Type: "card", ID: "c42"}, Creator: events.Ref{Type: "user", ID: "u7"},
		Parents: []events.Ref{{Type: "board", ID: "b1"}}, Particulars: json.RawMessage(`{"title":"Fix <login>"}`),
		OccurredAt: time.Date(2026, 12, 1, 10, 0, 0, 5000, time.UTC), RecordedAt: time.Date(2026, 12, 1, 10, 0, 1, 0, time.UTC)}
	ce, err := cloudevent.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var attrs map[string]any
	if err := json.Unmarshal(ce, &attrs); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"specversion": "1.0", "id": "e1", "source": "/tenants/acme", "type": "card.closed",
		"subject": "card/c42", "sequence": "7", "time": "2026-12-01T10:00:00.000005Z", "datacontenttype": "application/json"} {
		if attrs[k] != want {
			t.Errorf("%s = %v, want %v", k, attrs[k], want)
		}
	}
	in, errs := cloudevent.ToInput(ce, 0)
	if errs != nil {
		t.Fatalf("ToInput(Marshal(e)): %v", errs)
	}
	back, err := events.DecodeForTenant(in, 0, "acme", e.RecordedAt)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID != e.ID || back.Action != e.Action || back.Eventable != e.Eventable || back.Creator != e.Creator ||
		len(back.Parents) != 1 || back.Parents[0] != e.Parents[0] || !back.OccurredAt.Equal(e.OccurredAt) ||
		string(back.Particulars) != string(e.Particulars) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, e)
	}
}

// TestToInputErrors names the attribute at fault.
func TestToInputErrors(t *testing.T) {
	for body, field := range map[string]string{
		`[]`: "event",
		`{"id":"x","source":"s","type":"card.closed","data":{}}`:                                                    "specversion",
		`{"specversion":"1.0","source":"s","type":"card.closed","data":{}}`:                                         "id",
		`{"specversion":"1.0","id":"x","type":"card.closed","data":{}}`:                                             "source",
		`{"specversion":"1.0","id":"x","source":"s","type":"closed","data":{}}`:                                     "type",
		`{"specversion":"1.0","id":"x","source":"s","type":"card.closed","data":"text"}`:                            "data",
		`{"specversion":"1.0","id":"x","source":"s","type":"card.closed","data_base64":"AA=="}`:                     "data_base64",
		`{"specversion":"1.0","id":"x","source":"s","type":"card.closed","datacontenttype":"text/plain","data":{}}`: "datacontenttype",
	} {
		_, errs := cloudevent.ToInput(json.RawMessage(body), 0)
		found := false
		for _, e := range errs {
			found = found || e.Field == field
		}
		if !found {
			t.Errorf("%s: errors %v, want one for %s", body, errs, field)
		}
	}
}
