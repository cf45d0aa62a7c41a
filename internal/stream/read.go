package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/eventline/eventline/pkg/events"
)

// StoredMsg is a message read back from the stream.
type StoredMsg struct {
	Subject string
	Seq     uint64
	Time    time.Time // when the stream stored it
	Header  nats.Header
	Data    []byte
}

// readBatch is how many messages one direct get request asks for.
const readBatch = 500

// ReadSince reads the messages stored at or after since on subjects
// matching filter, in stream order, and calls fn with each until fn
// returns false or no message is left. It reads with batched direct gets
// ($JS.API.DIRECT.GET.EVENTS): no consumer is created, so an identity that
// may not create consumers can still read by time. Each request waits at
// most wait for its messages (default 5s).
func ReadSince(ctx context.Context, nc *nats.Conn, filter string, since time.Time, wait time.Duration, fn func(StoredMsg) bool) error {
	if wait <= 0 {
		wait = 5 * time.Second
	}
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("read the stream: subscribe: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	subject := "$JS.API.DIRECT.GET." + events.StreamName
	req := map[string]any{"batch": readBatch, "next_by_subj": filter, "start_time": since.UTC()}
	for {
		body, err := json.Marshal(req)
		if err != nil {
			return fmt.Errorf("read the stream: %w", err)
		}
		if err := nc.PublishRequest(subject, inbox, body); err != nil {
			return fmt.Errorf("read the stream: request: %w", err)
		}
		last, pending, err := readBatchReplies(ctx, sub, wait, fn)
		if err != nil || last == 0 || pending == 0 {
			return err
		}
		req = map[string]any{"batch": readBatch, "next_by_subj": filter, "seq": last + 1}
	}
}

// readBatchReplies takes one batch's messages up to its end-of-batch
// marker and returns the last sequence delivered and how many matching
// messages remain (0 when the reader stopped or nothing matched).
func readBatchReplies(ctx context.Context, sub *nats.Subscription, wait time.Duration, fn func(StoredMsg) bool) (last, pending uint64, err error) {
	stopped := false
	for {
		wctx, cancel := context.WithTimeout(ctx, wait)
		m, err := sub.NextMsgWithContext(wctx)
		cancel()
		if err != nil {
			return 0, 0, fmt.Errorf("read the stream: no answer from %s within %s: %w", events.StreamName, wait, err)
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "204": // end of batch
			pending, _ = strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			if stopped {
				pending = 0
			}
			return last, pending, nil
		case "404": // nothing (more) matches
			return last, 0, nil
		case "503":
			return 0, 0, fmt.Errorf("read the stream: %s does not answer direct gets (missing? %s)", events.StreamName, ProvisionHint)
		default:
			return 0, 0, fmt.Errorf("read the stream: status %s %s", status, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("read the stream: message without a sequence: %w", err)
		}
		ts, err := time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
		if err != nil {
			return 0, 0, fmt.Errorf("read the stream: message %d without a time stamp: %w", seq, err)
		}
		last = seq
		if stopped {
			continue // drain the batch up to its marker
		}
		msg := StoredMsg{Subject: m.Header.Get("Nats-Subject"), Seq: seq, Time: ts, Header: m.Header, Data: m.Data}
		if !fn(msg) {
			stopped = true
		}
	}
}
