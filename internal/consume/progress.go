package consume

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"
)

// In-progress acks (docs/operations.md, "AckWait and in-progress acks").
// A durable's AckWait is how long a message a dead process held waits
// before JetStream gives it to another replica, so it is short
// (DefaultAckWait); a handler that is alive but slow (a large fan-out, a
// slow Postgres) must not lose its message to a redelivery meanwhile.
// While a handler holds a message, the router sends an in-progress ack
// (+WPI, jetstream.Msg.InProgress), which restarts the server's AckWait,
// every AckWait/3, until the handler returns (the message is then acked
// or nacked) or MaxHold has passed. A SIGKILLed process sends none, so
// what it held comes back after AckWait.

// DefaultAckWait is the AckWait of a durable Ensure creates when none is
// given: a SIGKILLed replica's messages are redelivered to the others
// after 10 s, while in-progress acks keep every message a live handler
// holds. Messages prefetched into a replica's buffer get no in-progress
// acks until a handler takes them; at most Prefetch-1 wait per handler,
// taken within a few handler runs. (With 32 per handler, a loaded machine
// redelivered some of those under a 10 s AckWait while their replica was
// alive: the redelivery records first, so nothing is sent twice, but the
// first-attempt path is lost for it.)
const DefaultAckWait = 10 * time.Second

// MaxHold bounds how long a handler holds one message: in-progress acks
// stop after it (the message is redelivered an AckWait later), and the
// subscriber stops waiting for the handler's ack (it would be dropped).
// A handler that takes this long is taken to be stuck.
const MaxHold = 10 * time.Minute

// progress finds the JetStream message behind a Watermill one and keeps it
// alive with in-progress acks while a handler holds it.
type progress struct {
	ackWait atomic.Int64 // the durable's AckWait, read when a handler subscribes
	held    sync.Map     // *message.Message -> jetstream.Msg, from unmarshal until a handler takes it
	maxHold time.Duration
	// busy counts the messages between unmarshal and the end of their
	// handler: while it is above zero a subscriber callback may still send
	// to the router (Router.Run waits for zero before it closes the router).
	busy atomic.Int64
}

// unmarshaler remembers each message's jetstream.Msg for the middleware.
func (p *progress) unmarshaler() wmjs.Unmarshaler { return progressUnmarshaler{p} }

type progressUnmarshaler struct{ p *progress }

func (u progressUnmarshaler) Unmarshal(msg jetstream.Msg) (*message.Message, error) {
	m, err := Unmarshaler{}.Unmarshal(msg)
	if m != nil {
		u.p.busy.Add(1)
		u.p.held.Store(m, msg)
	}
	return m, err
}

// consumer binds the subscriber to the existing durable (as
// wmjs.ExistingConsumer does) and reads its AckWait.
func (p *progress) consumer(name string) wmjs.ResourceInitializer {
	existing := wmjs.ExistingConsumer(func(string, string) jetstream.ConsumerConfig {
		return jetstream.ConsumerConfig{Name: name}
	}, "")
	return func(ctx context.Context, js jetstream.JetStream, topic string) (jetstream.Consumer, func(context.Context, watermill.LoggerAdapter), error) {
		cons, closer, err := existing(ctx, js, topic)
		if err == nil && cons != nil {
			p.ackWait.Store(int64(cons.CachedInfo().Config.AckWait))
		}
		return cons, closer, err
	}
}

// interval is how often a held message gets an in-progress ack: a third
// of the AckWait, so one lost or late ack still leaves time for the next.
func (p *progress) interval() time.Duration {
	ackWait := time.Duration(p.ackWait.Load())
	if ackWait <= 0 {
		ackWait = 30 * time.Second // the server's default
	}
	return max(10*time.Millisecond, ackWait/3)
}

// middleware sends the in-progress acks while the handlers below it run
// (retries and dead-lettering included), and stops before the handler's
// result reaches the subscriber, which acks or nacks.
func (p *progress) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		v, ok := p.held.LoadAndDelete(msg)
		if !ok {
			return h(msg)
		}
		defer p.busy.Add(-1)
		stop := p.keepAlive(v.(jetstream.Msg))
		defer stop()
		return h(msg)
	}
}

// keepAlive sends in-progress acks for jm until the returned func is
// called (it returns once no more can be sent) or maxHold has passed. It
// is a timer, not a goroutine: most handlers return long before the
// first in-progress ack is due, and a goroutine with its ticker and
// timers per message showed in the webhooker's CPU profile.
func (p *progress) keepAlive(jm jetstream.Msg) (stop func()) {
	every := p.interval()
	until := time.Now().Add(p.maxHold)
	var mu sync.Mutex
	stopped := false
	mu.Lock() // the timer's func may run before t is set
	var t *time.Timer
	t = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped || !time.Now().Before(until) {
			return
		}
		// Fire and forget: an error means the connection is gone (the
		// message comes back after AckWait) or it was acked.
		if err := jm.InProgress(); err == nil {
			t.Reset(every)
		}
	})
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		mu.Unlock()
		t.Stop()
	}
}

// waitIdle waits, up to within, until no message is between unmarshal and
// the end of its handler, twice 10 ms apart (a callback that has just
// started has not unmarshaled yet).
func (p *progress) waitIdle(within time.Duration) {
	deadline := time.Now().Add(within)
	for quiet := 0; quiet < 2 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if p.busy.Load() == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
}
