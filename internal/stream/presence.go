package stream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/pkg/events"
)

// ProvisionHint says how to create what is missing.
const ProvisionHint = "run `eventline migrate` with the NATS admin identity (NATS_USER=admin) to provision it"

// ErrMissing marks a stream or durable that does not exist.
var ErrMissing = errors.New("missing")

// Lookup returns the EVENTS stream. A missing stream is an error wrapping
// ErrMissing that says how to create it: services never create it
// themselves (their NATS identities may not).
func Lookup(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, events.StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("stream %s does not exist (%w): %s", events.StreamName, ErrMissing, ProvisionHint)
	}
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", events.StreamName, err)
	}
	return s, nil
}

// LookupDurable returns the durable consumer name on EVENTS. A missing
// stream or durable is an error wrapping ErrMissing that says how to
// create it.
func LookupDurable(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Consumer, error) {
	c, err := js.Consumer(ctx, events.StreamName, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("stream %s does not exist (%w): %s", events.StreamName, ErrMissing, ProvisionHint)
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, fmt.Errorf("durable consumer %s on stream %s does not exist (%w): %s", name, events.StreamName, ErrMissing, ProvisionHint)
	case err != nil:
		return nil, fmt.Errorf("look up durable consumer %s on stream %s: %w", name, events.StreamName, err)
	}
	return c, nil
}

// Presence is a readiness check that the stream, and a service's durable,
// still exist: someone may delete them while the service runs, and then
// every append or pull fails. It asks the server at most once per
// interval and answers from the last result in between, so probes cost
// little. It is safe for concurrent use.
type Presence struct {
	js      jetstream.JetStream
	durable string
	every   time.Duration

	mu    sync.Mutex
	at    time.Time
	last  error
	check func(context.Context) error
}

// NewPresence checks the stream and, when durable is not empty, that
// durable; every is how long a result is reused (default 5s).
func NewPresence(js jetstream.JetStream, durable string, every time.Duration) *Presence {
	if every <= 0 {
		every = 5 * time.Second
	}
	p := &Presence{js: js, durable: durable, every: every}
	p.check = p.lookup
	return p
}

func (p *Presence) lookup(ctx context.Context) error {
	if p.durable == "" {
		_, err := Lookup(ctx, p.js)
		return err
	}
	_, err := LookupDurable(ctx, p.js, p.durable)
	return err
}

// Check is the observe.Check: nil while the stream (and durable) exist.
func (p *Presence) Check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.at.IsZero() && time.Since(p.at) < p.every {
		return p.last
	}
	p.last = p.check(ctx)
	p.at = time.Now()
	return p.last
}
