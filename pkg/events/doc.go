// Package events is eventline's public contract for producers: the Event
// envelope, its validation rules (CONTRACT §1), the subject scheme of the
// EVENTS stream and a Publisher that Go services use to append events
// directly over NATS, with the same checks and the same atomic-batch path as
// the HTTP ingest service.
//
// A typical producer:
//
//	pub, err := events.NewPublisher(nc)
//	...
//	res, err := pub.Append(ctx, events.Event{
//		Tenant:    "acme",
//		Action:    "closed",
//		Eventable: events.Ref{Type: "card", ID: "c42"},
//		Creator:   events.Ref{Type: "user", ID: "u7"},
//		Parents:   []events.Ref{{Type: "board", ID: "b1"}},
//	})
package events
