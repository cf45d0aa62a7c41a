package events_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/eventline/eventline/pkg/events"
)

// BenchmarkParseStored is what every consumer pays per stream message to
// turn it into an event (docs/contract.md): a message as the Publisher
// stores it (MarshalInput, Nats-Msg-Id), with parents and particulars.
// "published" is the event the webhooker's fan-out benchmarks publish;
// "traced" adds an occurred_at, a second parent and a traceparent.
func BenchmarkParseStored(b *testing.B) {
	published := events.Event{ID: "bench-1234", Tenant: "acme", Action: "closed", Eventable: events.Ref{Type: "card", ID: "c1234"},
		Creator: events.Ref{Type: "user", ID: "u7"}, Parents: []events.Ref{{Type: "board", ID: "b1"}},
		Particulars: json.RawMessage(`{"column":"Done","title":"A card with a title"}`)}
	traced := published
	traced.Parents = []events.Ref{{Type: "board", ID: "b1"}, {Type: "project", ID: "p9"}}
	traced.OccurredAt = time.Date(2026, 11, 25, 9, 59, 59, 123456000, time.UTC)
	traced.Traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	stamp := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	for _, c := range []struct {
		name string
		e    events.Event
	}{{"published", published}, {"traced", traced}} {
		body, err := c.e.MarshalInput()
		if err != nil {
			b.Fatal(err)
		}
		subject, err := events.Subject(c.e.Tenant, c.e.Eventable.Type, c.e.Action)
		if err != nil {
			b.Fatal(err)
		}
		h := nats.Header{}
		h.Set(events.HeaderMsgID, events.MsgID(c.e.Tenant, c.e.ID))
		if c.e.Traceparent != "" {
			h.Set("traceparent", c.e.Traceparent)
		}
		m := events.Message{Subject: subject, Data: body, Header: h, Seq: 42, Timestamp: stamp}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := events.ParseStored(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
