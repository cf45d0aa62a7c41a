// Package events is eventline's public contract for producers, the same
// over HTTP and NATS (docs/contract.md; machine-readable in docs/schema and
// docs/asyncapi.yaml):
//
//   - Event and its input form (MarshalInput): the body of POST /v1/events
//     and, byte for byte, the body of a message on the EVENTS stream;
//   - the one validation every path runs: Decode for a producer's bytes,
//     Normalize for a Go value, ParseStored for a stream message, all
//     returning *ValidationError with the same field errors; it includes
//     CheckStorable, which refuses what the PostgreSQL read models cannot
//     hold (and which the other write APIs use too);
//   - the subject scheme events.<tenant>.<eventable type>.<action>;
//   - a Publisher that Go services use to append events directly over NATS,
//     with the same checks and the same atomic-batch path as HTTP ingest.
//
// Consumers derive the system fields (recorded_at, type, seq, and defaults
// for id and occurred_at) from the stream message: see ParseStored.
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
