package notifier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/pkg/events"
)

// The commit pipeline. The notifier applies the stream in stream order:
// a batch is a contiguous run of stream sequences (after, last], applied
// in one transaction that moves the checkpoint from after to last, so
// batches commit one after the other in stream order (a transaction
// waits, in memory, for the batches before it; the checkpoint fences out
// any other replica). Inside a batch, events are applied in stream order,
// each seeing the watches the earlier ones added.
//
// Batches run concurrently only as far as they are unrelated: a batch
// reads no watchers of, and writes no notification or watch of, a group
// that a batch still running before it writes (it waits for that one to
// commit first, before reading anything), and changes the inbox of no
// user whose inbox such a batch changes. So an event sees the effects of
// every earlier event touching its objects whichever batch carried it.
//
// Failures keep the order: a batch that fails rolls back, the batches
// after it (which cannot commit before it) roll back too, and the same
// run of the stream is tried again — after a pause when the failure is
// transient, one event per batch when the database refused the data, so
// that the refused event is dead-lettered alone and the others are applied
// in order.

// errAborted rolls back a batch whose predecessor failed.
var errAborted = errors.New("an earlier batch failed")

// slot is one batch in the pipeline. It is the batch's gate.
type slot struct {
	after, last uint64
	items       []*item
	ids         map[[2]string]bool // the events' (tenant, id)
	before      []*slot            // the batches running when it started, oldest first
	started     time.Time

	// Set by admit and lockUsers before they close admitted and
	// usersKnown (or left nil when the batch failed before).
	reads, writes map[watchKey]bool
	users         map[userKey]bool

	admitted, usersKnown, done chan struct{}
	admitOnce, usersOnce       sync.Once
	err                        error // read after done
	res                        applyResult
}

func newSlot(after, last uint64, items []*item, before []*slot) *slot {
	s := &slot{after: after, last: last, items: items, before: before, ids: map[[2]string]bool{}, started: time.Now(),
		admitted: make(chan struct{}), usersKnown: make(chan struct{}), done: make(chan struct{})}
	for _, it := range items {
		if it.event != nil {
			s.ids[[2]string{it.event.Tenant, it.event.ID}] = true
		}
	}
	return s
}

// finish ends the slot with err.
func (s *slot) finish(err error) {
	s.err = err
	s.admitOnce.Do(func() { close(s.admitted) })
	s.usersOnce.Do(func() { close(s.usersKnown) })
	close(s.done)
}

// wait waits for p to end; errAborted when it failed.
func (p *slot) wait(ctx context.Context) error {
	select {
	case <-p.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if p.err != nil {
		return errAborted
	}
	return nil
}

// waitFor waits until ch is closed or p has ended; errAborted when p
// failed.
func (p *slot) waitFor(ctx context.Context, ch chan struct{}) error {
	select {
	case <-ch:
	case <-p.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-p.done:
		if p.err != nil {
			return errAborted
		}
	default:
	}
	return nil
}

// admit implements gate.
func (s *slot) admit(ctx context.Context, reads, writes map[watchKey]bool) error {
	s.reads, s.writes = reads, writes
	s.admitOnce.Do(func() { close(s.admitted) })
	for _, p := range s.before {
		if err := p.waitFor(ctx, p.admitted); err != nil {
			return err
		}
		if overlaps(p.writes, reads) || overlaps(p.writes, writes) {
			if err := p.wait(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// lockUsers implements gate.
func (s *slot) lockUsers(ctx context.Context, users map[userKey]bool) error {
	s.users = users
	s.usersOnce.Do(func() { close(s.usersKnown) })
	for _, p := range s.before {
		if err := p.waitFor(ctx, p.usersKnown); err != nil {
			return err
		}
		if overlaps(p.users, users) {
			if err := p.wait(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// beforeCommitted reports whether every batch before s has committed.
func (s *slot) beforeCommitted() bool {
	for _, p := range s.before {
		select {
		case <-p.done:
			if p.err != nil {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// waitBefore waits for every batch before s to commit.
func (s *slot) waitBefore(ctx context.Context) error {
	for _, p := range s.before {
		if err := p.wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

func overlaps[K comparable](a, b map[K]bool) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	for k := range a {
		if b[k] {
			return true
		}
	}
	return false
}

// loop is the consumer's state; one goroutine runs it.
type loop struct {
	c       *orderedConsumer
	next    uint64            // the first sequence not committed (checkpoint + 1)
	cursor  uint64            // the first sequence not in a running batch
	held    map[uint64]*item  // messages received and not committed
	skip    map[uint64]uint64 // sequences [from, to) the stream does not hold
	running []*slot           // oldest first
	wake    chan struct{}     // a batch ended
	pinID   string            // the pin of the last message received
	pending int               // held messages not in a running batch
	gap     time.Time         // when the missing message at cursor was first noticed
	splitTo uint64            // up to this sequence, batches carry one message
	retryAt time.Time         // after a failure, when to try again
	backoff time.Duration
	resync  bool        // the checkpoint moved under us: read it before going on
	linger  *time.Timer // wakes run when a lingering batch may start
}

func newLoop(c *orderedConsumer, last uint64) *loop {
	return &loop{c: c, next: last + 1, cursor: last + 1, held: map[uint64]*item{}, skip: map[uint64]uint64{},
		wake: make(chan struct{}, 1), backoff: 100 * time.Millisecond, linger: time.NewTimer(time.Hour)}
}

// run consumes msgs until ctx ends and every running batch has ended.
func (l *loop) run(ctx context.Context, msgs <-chan jetstream.Msg) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	l.linger.Stop()
	defer l.linger.Stop()
	lastTouch := time.Now()
	for {
		if ctx.Err() != nil && len(l.running) == 0 {
			return
		}
		var in <-chan jetstream.Msg
		if ctx.Err() == nil {
			in = msgs
		}
		select {
		case m := <-in:
			l.receive(m)
		case <-l.wake:
			l.ended(ctx)
		case <-l.linger.C:
		case <-tick.C:
			if time.Since(lastTouch) > 5*time.Second {
				l.touch()
				lastTouch = time.Now()
			}
		case <-ctx.Done():
		}
		if ctx.Err() == nil {
			l.start(ctx)
		}
	}
}

// receive takes one delivered message.
func (l *loop) receive(m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		l.c.log.Warn("a message without JetStream metadata", "subject", m.Subject(), "error", err)
		_ = m.Term()
		return
	}
	if pin := m.Headers().Get("Nats-Pin-Id"); pin != "" {
		l.pinID = pin
	}
	seq := meta.Sequence.Stream
	if seq < l.next {
		_ = m.Ack() // committed already: a redelivery
		return
	}
	if it := l.held[seq]; it != nil {
		it.msgs = append(it.msgs, m)
		return
	}
	it := parseItem(events.Message{Subject: m.Subject(), Data: m.Data(), Header: m.Headers(), Seq: seq, Timestamp: meta.Timestamp})
	it.msgs = []jetstream.Msg{m}
	l.held[seq] = it
	if seq >= l.cursor {
		l.pending++
	}
}

// form takes the batch that starts at cursor: held messages in sequence
// order (through what the stream does not hold), at most n, stopping at
// the first one missing. ok is false when there is nothing to take.
func (l *loop) form(n int) (items []*item, last uint64, ok bool) {
	seq := l.cursor
	for len(items) < n {
		if to, hole := l.skip[seq]; hole {
			seq = to
			continue
		}
		it := l.held[seq]
		if it == nil {
			break
		}
		items = append(items, it)
		seq++
	}
	return items, seq - 1, seq > l.cursor
}

// start starts the batches that may start now.
func (l *loop) start(ctx context.Context) {
	if l.resync && len(l.running) == 0 && time.Now().After(l.retryAt) {
		l.readCheckpoint(ctx)
	}
	for !l.resync && len(l.running) < l.c.cfg.Inflight && time.Now().After(l.retryAt) {
		n := l.c.cfg.Batch
		if l.cursor <= l.splitTo {
			if len(l.running) > 0 {
				return // one event at a time, one batch at a time
			}
			n = 1
		}
		items, last, ok := l.form(n)
		if !ok {
			l.noticeGap(ctx)
			return
		}
		l.gap = time.Time{}
		// A batch that would wait behind a running one starts only when
		// full; until then messages gather for it.
		if len(l.running) > 0 && len(items) < n {
			return
		}
		if wait := lingerLeft(items, n, l.c.cfg.Linger, time.Now()); wait > 0 {
			l.linger.Reset(wait)
			return
		}
		s := newSlot(l.cursor-1, last, items, slices.Clone(l.running))
		for _, p := range l.running {
			if overlaps(p.ids, s.ids) {
				return // the same event twice in flight: wait for the first
			}
		}
		l.running = append(l.running, s)
		l.cursor = last + 1
		l.pending -= len(items)
		go l.runSlot(ctx, s)
	}
}

// lingerLeft is how much longer a batch of items (at most n) waits for
// more messages before it starts: until linger has passed since its
// oldest message arrived, unless it is full. At low rates this makes one
// transaction of events that arrive a few ms apart instead of one each.
func lingerLeft(items []*item, n int, linger time.Duration, now time.Time) time.Duration {
	if len(items) >= n || linger <= 0 {
		return 0
	}
	oldest := items[0].received
	for _, it := range items[1:] {
		if it.received.Before(oldest) {
			oldest = it.received
		}
	}
	return max(0, oldest.Add(linger).Sub(now))
}

func (l *loop) runSlot(ctx context.Context, s *slot) {
	// A batch runs to its end even when the consumer stops, within a
	// bound: its commit is what lets its messages be acked.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	l.c.apply(sctx, s)
	s.finish(s.err)
	select {
	case l.wake <- struct{}{}:
	default: // a wake-up is pending already: it settles every batch that ended
	}
}

// ended settles the batches that ended, in order: the oldest running one
// first.
func (l *loop) ended(ctx context.Context) {
	for len(l.running) > 0 {
		head := l.running[0]
		select {
		case <-head.done:
		default:
			return
		}
		if head.err != nil {
			l.failed(ctx, head)
			return
		}
		l.running = l.running[1:]
		l.c.committed(ctx, head)
		for _, it := range head.items {
			delete(l.held, it.seq)
		}
		for from := range l.skip {
			if from <= head.last {
				delete(l.skip, from)
			}
		}
		l.next = head.last + 1
		l.backoff = 100 * time.Millisecond
	}
}

// failed handles the failure of the oldest running batch: once every
// batch after it has ended (they roll back), the same run of the stream is
// tried again.
func (l *loop) failed(ctx context.Context, head *slot) {
	for _, s := range l.running[1:] {
		<-s.done // they cannot commit before head: they roll back
	}
	l.running = nil
	l.cursor = l.next
	l.pending = len(l.held)
	if l.c.hook != nil {
		_ = l.c.hook("failed", head)
	}
	err := head.err
	switch {
	case ctx.Err() != nil:
	case errors.Is(err, errFenced):
		l.c.log.WarnContext(ctx, "another replica applied these events; following its checkpoint", "after", head.after)
		l.resync = true
	case isPermanent(err) && eventCount(head) > 1:
		l.c.log.WarnContext(ctx, "batch refused by the database; applying it one event at a time", "messages", len(head.items), "error", err)
		l.splitTo = head.last
	case isPermanent(err) && eventCount(head) == 1:
		for _, it := range head.items {
			if it.err == nil {
				it.err = fmt.Errorf("refused by the database: %w", err)
			}
		}
	default:
		l.c.log.WarnContext(ctx, "notifier batch failed; retrying", "messages", len(head.items), "error", err, "retry_in", l.backoff)
		l.retryAt = time.Now().Add(l.backoff)
		l.backoff = min(5*time.Second, 2*l.backoff)
	}
}

// eventCount counts the batch's messages that carry an event to apply.
func eventCount(s *slot) int {
	n := 0
	for _, it := range s.items {
		if it.err == nil {
			n++
		}
	}
	return n
}

// noticeGap is called when the message at cursor is missing. While
// messages after it are held, it waits GapWait for the message to arrive
// (a redelivery), then reads it from the stream: after a failover, the
// messages the previous replica held come back only after their ack wait.
func (l *loop) noticeGap(ctx context.Context) {
	if l.pending == 0 {
		l.gap = time.Time{}
		return
	}
	if l.gap.IsZero() {
		l.gap = time.Now()
		if len(l.running) == 0 {
			// Another replica may have applied them: this one was a
			// standby, and has just been given the stream.
			l.readCheckpoint(ctx)
		}
		return
	}
	if time.Since(l.gap) < l.c.cfg.GapWait {
		return
	}
	l.gap = time.Time{}
	if len(l.running) == 0 && (!l.readCheckpoint(ctx) || l.held[l.cursor] != nil) {
		return
	}
	l.fillGap(ctx)
}

// fillGap reads the messages missing between cursor and the first held
// message after it from the stream (at most a batch), and records the
// sequences the stream does not hold.
func (l *loop) fillGap(ctx context.Context) {
	end := uint64(0)
	for seq := range l.held {
		if seq >= l.cursor && (end == 0 || seq < end) {
			end = seq
		}
	}
	if end == 0 {
		return
	}
	seq, filled := l.cursor, 0
	for seq < end && filled < l.c.cfg.Batch {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		raw, err := l.c.str.GetMsg(gctx, seq, jetstream.WithGetMsgSubject(events.SubjectPrefix+".>"))
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && raw.Sequence >= end) {
			l.skip[seq] = end
			break
		}
		if err != nil {
			l.c.log.WarnContext(ctx, "read a missing message from the stream", "stream_seq", seq, "error", err)
			break
		}
		if raw.Sequence > seq {
			l.skip[seq] = raw.Sequence
		}
		l.held[raw.Sequence] = parseItem(events.Message{Subject: raw.Subject, Data: raw.Data, Header: raw.Header, Seq: raw.Sequence, Timestamp: raw.Time})
		l.pending++
		filled++
		seq = raw.Sequence + 1
	}
	l.c.log.InfoContext(ctx, "read messages missing from the deliveries from the stream", "from", l.cursor, "to", seq-1, "read", filled)
}

// readCheckpoint follows the checkpoint in the database (another replica
// moved it, or this one was a standby): the messages up to it are
// committed. It reports whether it could read it. Only while no batch
// runs.
func (l *loop) readCheckpoint(ctx context.Context) bool {
	var last int64
	err := l.c.pool.QueryRow(ctx, `SELECT last_seq FROM notify.progress WHERE consumer = $1`, l.c.name).Scan(&last)
	if err != nil {
		l.c.log.WarnContext(ctx, "read the notifier checkpoint", "error", err)
		l.retryAt = time.Now().Add(l.backoff)
		l.backoff = min(5*time.Second, 2*l.backoff)
		return false
	}
	l.resync = false
	cp := uint64(last)
	for seq, it := range l.held {
		if seq <= cp {
			for _, m := range it.msgs {
				_ = m.Ack()
			}
			delete(l.held, seq)
		}
	}
	for from := range l.skip {
		if from <= cp {
			delete(l.skip, from)
		}
	}
	l.next, l.cursor, l.pending = cp+1, cp+1, len(l.held)
	return true
}

// touch tells the server that messages held for a while are still being
// worked on, so they are not redelivered (to this replica) meanwhile.
func (l *loop) touch() {
	for _, it := range l.held {
		if time.Since(it.touched) > 10*time.Second && len(it.msgs) > 0 {
			_ = it.msgs[len(it.msgs)-1].InProgress()
			it.touched = time.Now()
		}
	}
}

// handBack returns every message held and not committed for redelivery.
func (l *loop) handBack() {
	for _, it := range l.held {
		for _, m := range it.msgs {
			_ = m.Nak()
		}
	}
}
