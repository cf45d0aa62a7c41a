package events_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/pkg/events"
)

// A Go service records what happened straight into the EVENTS stream:
// the track_event of eventline. Append returns once the event is durable.
func ExamplePublisher_Append() {
	url, stop := exampleServer() // your NATS_URL
	defer stop()

	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = nc.Drain() }()

	pub, err := events.NewPublisher(nc)
	if err != nil {
		log.Fatal(err)
	}
	res, err := pub.Append(context.Background(), events.Event{
		ID:          "close-c42-1", // optional: makes the append idempotent
		Tenant:      "acme",
		Action:      "closed",
		Eventable:   events.Ref{Type: "card", ID: "c42"},
		Creator:     events.Ref{Type: "user", ID: "u7"},
		Parents:     []events.Ref{{Type: "board", ID: "b1"}},
		Particulars: []byte(`{"column":"Done"}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.ID, res.Seq, res.Duplicate)

	// Sending the same id again appends nothing.
	res, _ = pub.Append(context.Background(), events.Event{
		ID: "close-c42-1", Tenant: "acme", Action: "closed",
		Eventable: events.Ref{Type: "card", ID: "c42"}, Creator: events.Ref{Type: "user", ID: "u7"},
	})
	fmt.Println(res.ID, res.Seq, res.Duplicate)

	// A batch is appended atomically, at the cost of about one fsync.
	results, err := pub.AppendBatch(context.Background(), []events.Event{
		{Tenant: "acme", Action: "published", Eventable: events.Ref{Type: "card", ID: "c43"}, Creator: events.Ref{Type: "user", ID: "u7"}},
		{Tenant: "acme", Action: "assigned", Eventable: events.Ref{Type: "card", ID: "c43"}, Creator: events.Ref{Type: "user", ID: "u7"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(results[0].Seq, results[1].Seq)
	// Output:
	// close-c42-1 1 false
	// close-c42-1 1 true
	// 2 3
}

// exampleServer starts an embedded JetStream server with the EVENTS stream,
// standing in for the eventline deployment.
func exampleServer() (string, func()) {
	dir, _ := os.MkdirTemp("", "example-")
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, SyncAlways: true, NoLog: true, NoSigs: true})
	if err != nil {
		log.Fatal(err)
	}
	s.Start()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	if _, err := stream.Ensure(context.Background(), nc, stream.Config{}); err != nil {
		log.Fatal(err)
	}
	return s.ClientURL(), func() { s.Shutdown(); os.RemoveAll(dir) }
}
