package consume

import "github.com/ThreeDotsLabs/watermill/message"

// warmHandlers runs every handler call on a long-lived goroutine. The
// Watermill router starts a goroutine per message, with a small stack,
// and decoding and validating an event (events.ParseStored) grows it
// twice: the stack copies were 4-10% of the webhooker's CPU at one
// delivery per event (BENCHMARKS.md, "Fan-out at scale"). A worker keeps
// its grown stack from one message to the next; the router's goroutine
// only waits for it. There is at most one worker per message in flight
// (a worker is started only when none is idle), and they end when the
// router stops.
type warmHandlers struct {
	work chan *warmCall
	stop chan struct{}
}

type warmCall struct {
	h    message.HandlerFunc
	msg  *message.Message
	out  []*message.Message
	err  error
	done chan struct{}
}

func newWarmHandlers() *warmHandlers {
	return &warmHandlers{work: make(chan *warmCall), stop: make(chan struct{})}
}

// middleware hands each call of h to an idle worker, or a new one.
func (w *warmHandlers) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		c := &warmCall{h: h, msg: msg, done: make(chan struct{})}
		select {
		case w.work <- c:
		default:
			go w.worker(c)
		}
		<-c.done
		return c.out, c.err
	}
}

func (w *warmHandlers) worker(c *warmCall) {
	for {
		c.run()
		select {
		case c = <-w.work:
		case <-w.stop:
			return
		}
	}
}

func (c *warmCall) run() {
	defer close(c.done)
	c.out, c.err = c.h(c.msg)
}

// close ends the idle workers; calls still running finish first.
func (w *warmHandlers) close() { close(w.stop) }
