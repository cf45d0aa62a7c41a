// Package provision creates and updates what eventline needs on NATS, the
// EVENTS stream and every service's durable consumer, under the NATS admin
// identity. `eventline migrate` runs it (and `eventline dev` and `make run`
// through it); the services only check that what they use exists, since
// their own identities may not create, change or delete any of it.
package provision

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/consume"
	"github.com/eventline/eventline/internal/notifier"
	"github.com/eventline/eventline/internal/projector"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/webhooker"
)

// Config is the shape of the stream and of every durable. Zero values take
// the defaults each service documents.
type Config struct {
	Stream    stream.Config
	Projector projector.ConsumerConfig
	// NotifierMaxDeliver and WebhookerMaxDeliver bound the deliveries of
	// one event to those services before they dead-letter it; the services
	// read them back from their durables.
	NotifierMaxDeliver int // default 50
	// NotifierPinnedTTL is how long the notifier's durable stays pinned to
	// a replica that stopped asking for messages before a standby gets
	// them. Default notifier.DefaultPinnedTTL.
	NotifierPinnedTTL   time.Duration
	WebhookerMaxDeliver int // default 100
	// WebhookerAckWait is how long a message the webhooker's fan-out
	// received without acking waits before JetStream redelivers it: a
	// SIGKILLed replica's messages come back after it, while live handlers
	// keep theirs with in-progress acks (docs/operations.md). Default
	// consume.DefaultAckWait (10 s); provisioning updates an existing
	// durable's.
	WebhookerAckWait time.Duration
}

// Register binds the settings to flags and environment variables: the
// same variables the services used when each provisioned its own durable.
func (c *Config) Register(s *config.Set) {
	c.Stream.Register(s)
	s.String(&c.Projector.Name, "projector-consumer", "PROJECTOR_CONSUMER", projector.DefaultConsumer, "the projector's durable (the NATS permissions name \"projector\")")
	s.Duration(&c.Projector.AckWait, "projector-ack-wait", "PROJECTOR_ACK_WAIT", 30*time.Second, "redeliver a message the projector has not acked within this")
	s.Int(&c.Projector.MaxDeliver, "projector-max-deliver", "PROJECTOR_MAX_DELIVER", 50, "deliveries of one message to the projector before JetStream gives up")
	s.Int(&c.Projector.MaxAckPending, "projector-max-ack-pending", "PROJECTOR_MAX_ACK_PENDING", 20000, "messages in flight across all projector replicas")
	s.Int(&c.NotifierMaxDeliver, "notifier-max-deliver", "NOTIFIER_MAX_DELIVER", 50, "deliveries of one message to the notifier by JetStream (one it gives up on is read from the stream)")
	s.Duration(&c.NotifierPinnedTTL, "notifier-pinned-ttl", "NOTIFIER_PINNED_TTL", notifier.DefaultPinnedTTL, "how long the notifier's durable waits for a replica that stopped asking for messages before a standby takes over")
	s.Int(&c.WebhookerMaxDeliver, "webhooker-max-deliver", "WEBHOOK_MAX_DELIVER", 100, "deliveries of one event to the webhooker's fan-out (1s..1m apart) before it is dead-lettered")
	s.Duration(&c.WebhookerAckWait, "webhooker-ack-wait", "WEBHOOK_ACK_WAIT", consume.DefaultAckWait, "redeliver a message the webhooker's fan-out has not acked within this (a live handler's message is kept with in-progress acks)")
}

// Result says what Run provisioned.
type Result struct {
	Stream   jetstream.StreamConfig
	Durables []string
}

// Run creates the EVENTS stream or updates what differs, then creates or
// updates the projector's, the notifier's and the webhooker's durables.
// nc must be connected as the NATS admin.
func Run(ctx context.Context, nc *nats.Conn, c Config) (Result, error) {
	s, err := stream.Ensure(ctx, nc, c.Stream)
	if err != nil {
		return Result{}, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return Result{}, fmt.Errorf("jetstream: %w", err)
	}
	res := Result{Stream: s.CachedInfo().Config}
	for _, ensure := range []func() (jetstream.Consumer, error){
		func() (jetstream.Consumer, error) { return projector.EnsureConsumer(ctx, js, c.Projector) },
		func() (jetstream.Consumer, error) {
			return notifier.EnsureConsumer(ctx, js, notifier.DefaultConsumer, orDefault(c.NotifierMaxDeliver, 50), c.NotifierPinnedTTL)
		},
		func() (jetstream.Consumer, error) {
			return webhooker.EnsureConsumer(ctx, js, webhooker.DefaultConsumer, orDefault(c.WebhookerMaxDeliver, 100), c.WebhookerAckWait)
		},
	} {
		cons, err := ensure()
		if err != nil {
			return res, err
		}
		res.Durables = append(res.Durables, cons.CachedInfo().Name)
	}
	return res, nil
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}
