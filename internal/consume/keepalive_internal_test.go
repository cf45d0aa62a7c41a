package consume

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// countingMsg is a jetstream.Msg that reports its in-progress acks.
type countingMsg struct {
	jetstream.Msg
	acks chan struct{}
}

func (m countingMsg) InProgress() error {
	m.acks <- struct{}{}
	return nil
}

// TestKeepAliveRepeatsUntilStopped: a held message gets in-progress acks
// again and again (not just once) until the handler lets it go; stop
// returns with none in flight, so none is sent after the ack.
func TestKeepAliveRepeatsUntilStopped(t *testing.T) {
	p := &progress{maxHold: MaxHold}
	p.ackWait.Store(int64(30 * time.Millisecond)) // an ack every 10 ms
	m := countingMsg{acks: make(chan struct{})}
	stop := p.keepAlive(m)
	for i := range 3 {
		select {
		case <-m.acks:
		case <-time.After(10 * time.Second):
			t.Fatalf("in-progress ack %d never came", i+1)
		}
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	for {
		select {
		case <-m.acks: // one may have been due as stop was called
		case <-stopped:
			select {
			case <-m.acks:
				t.Fatal("an in-progress ack after stop returned")
			default:
			}
			return
		}
	}
}
