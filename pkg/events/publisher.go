package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// MaxBatch is the largest atomic batch the NATS server accepts by default;
// AppendBatch splits longer slices into several atomic batches.
const MaxBatch = 1000

// Headers of the JetStream atomic batch publish protocol (ADR-50).
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
)

// JetStream error codes the publisher acts on.
const (
	errCodeBatchDuplicate  jetstream.ErrorCode = 10201 // batch contains an already stored Nats-Msg-Id
	errCodeBatchIncomplete jetstream.ErrorCode = 10176
	errCodeBatchInflight   jetstream.ErrorCode = 10210
	errCodeAtomicDisabled  jetstream.ErrorCode = 10174
)

// ErrUnavailable wraps every append failure that is not the input's fault:
// the server is unreachable, the stream is missing or full, or the append
// timed out. The events may be retried; an event with a client-chosen id is
// then de-duplicated, one without an id may be stored twice.
var ErrUnavailable = errors.New("event stream unavailable")

// Result is the outcome of appending one event.
type Result struct {
	// ID is the event id (client-chosen or assigned).
	ID string `json:"id"`
	// Seq is the stream sequence the event is stored at; for a duplicate,
	// the sequence of the original.
	Seq uint64 `json:"seq"`
	// Duplicate is true when the id was already stored and nothing new was
	// appended.
	Duplicate bool `json:"duplicate"`
}

// Publisher validates events and appends them to the EVENTS stream. It is
// safe for concurrent use. It does not create the stream: the eventline
// services provision it on start.
type Publisher struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  string
	timeout time.Duration
	now     func() time.Time
}

// PublisherOption configures a Publisher.
type PublisherOption func(*Publisher)

// WithTimeout bounds each append that has no earlier context deadline.
// Default 10s.
func WithTimeout(d time.Duration) PublisherOption { return func(p *Publisher) { p.timeout = d } }

// WithClock sets the clock used for receive times. Default time.Now.
func WithClock(now func() time.Time) PublisherOption { return func(p *Publisher) { p.now = now } }

// WithStream appends to another stream than EVENTS (tests, migrations).
func WithStream(name string) PublisherOption { return func(p *Publisher) { p.stream = name } }

// NewPublisher returns a Publisher over nc. It fails when the connected NATS
// server is older than MinServerVersion.
func NewPublisher(nc *nats.Conn, opts ...PublisherOption) (*Publisher, error) {
	if err := CheckServerVersion(nc.ConnectedServerVersion()); err != nil {
		return nil, err
	}
	// Pending async publishes (AppendEach) whose ack never comes are
	// dropped after the publisher's timeout instead of filling the window.
	p := &Publisher{nc: nc, stream: StreamName, timeout: 10 * time.Second, now: time.Now}
	for _, o := range opts {
		o(p)
	}
	asyncTimeout := p.timeout
	if asyncTimeout <= 0 {
		asyncTimeout = time.Minute
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(asyncTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream context: %w", err)
	}
	p.js = js
	return p, nil
}

// Append validates e, fills in its system fields and appends it durably. It
// returns a *ValidationError for invalid input and an error wrapping
// ErrUnavailable when the stream cannot take it.
func (p *Publisher) Append(ctx context.Context, e Event) (Result, error) {
	if err := e.Normalize(p.now()); err != nil {
		return Result{}, err
	}
	ctx, cancel := p.withTimeout(ctx)
	defer cancel()
	msg, err := message(e)
	if err != nil {
		return Result{}, err
	}
	return p.publishOne(ctx, e, msg)
}

// publishOne appends one event with an ordinary JetStream publish, expecting
// the stream: the server makes it durable before the PubAck as the stream's
// sync_interval says (always, docs/architecture.md §2), and de-duplicates its
// Nats-Msg-Id like any other. An atomic batch would add nothing for one
// message but its fixed cost: the server stages every batch in a store of
// its own, created and fsynced for it, before the commit.
func (p *Publisher) publishOne(ctx context.Context, e Event, msg *nats.Msg) (Result, error) {
	ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(p.stream))
	if err != nil {
		return Result{}, unavailable("append event", err)
	}
	r := Result{ID: e.ID, Seq: ack.Sequence, Duplicate: ack.Duplicate}
	if r.Duplicate {
		return p.ownDuplicate(ctx, e, msg, r)
	}
	return r, nil
}

// ownDuplicate checks a duplicate the stream reported for e: the stored
// message must be on e's tenant's subjects. A NATS producer may set any
// Nats-Msg-Id, so a message of another tenant can hold e's id (within the
// stream's window); then e is appended under a message id of its own,
// <tenant>:<id>:<that message's seq>, which a retry finds again.
func (p *Publisher) ownDuplicate(ctx context.Context, e Event, msg *nats.Msg, r Result) (Result, error) {
	subject, err := p.storedSubject(ctx, r.Seq)
	if err != nil {
		return Result{}, unavailable("check a duplicate", err)
	}
	if strings.HasPrefix(subject, "events."+e.Tenant+".") {
		return r, nil
	}
	own := nats.NewMsg(msg.Subject)
	own.Data = msg.Data
	for k, v := range msg.Header {
		own.Header[k] = v
	}
	own.Header.Set(HeaderMsgID, MsgID(e.Tenant, e.ID)+":"+strconv.FormatUint(r.Seq, 10))
	ack, err := p.js.PublishMsg(ctx, own, jetstream.WithExpectStream(p.stream))
	if err != nil {
		return Result{}, unavailable("append event", err)
	}
	return Result{ID: e.ID, Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// storedSubject reads the subject of the message at seq (a direct get).
func (p *Publisher) storedSubject(ctx context.Context, seq uint64) (string, error) {
	req, err := json.Marshal(map[string]uint64{"seq": seq})
	if err != nil {
		return "", err
	}
	resp, err := p.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+p.stream, req)
	if err != nil {
		return "", err
	}
	if subject := resp.Header.Get("Nats-Subject"); subject != "" {
		return subject, nil
	}
	return "", fmt.Errorf("direct get of message %d: %s %s", seq, resp.Header.Get("Status"), resp.Header.Get("Description"))
}

// AppendBatch validates every event (all or nothing: one invalid event
// fails the call with a *ValidationError listing every problem, and nothing
// is appended), then appends them in order as atomic batches of at most
// MaxBatch events, each costing about one fsync. Results are in input order.
func (p *Publisher) AppendBatch(ctx context.Context, es []Event) ([]Result, error) {
	now := p.now()
	var verr ValidationError
	normalized := make([]Event, len(es))
	for i, e := range es {
		if err := e.Normalize(now); err != nil {
			var v *ValidationError
			if !errors.As(err, &v) {
				return nil, err
			}
			for _, fe := range v.Errors {
				fe.Index = i
				verr.Errors = append(verr.Errors, fe)
			}
			continue
		}
		normalized[i] = e
	}
	if err := verr.orNil(); err != nil {
		return nil, err
	}
	return p.AppendNormalized(ctx, normalized)
}

// AppendNormalized appends events that Normalize has already accepted, in
// order, as atomic batches of at most MaxBatch events; a single event is an
// ordinary publish (as Append), which is as durable and cheaper. When the server
// rejects a batch because it holds an id that is already stored (or the
// same id twice), that batch's events are appended one by one instead, so
// the re-sent ids come back Duplicate with their original Seq and the other
// events are stored. It is the path the ingest service's group commit uses.
func (p *Publisher) AppendNormalized(ctx context.Context, es []Event) ([]Result, error) {
	ctx, cancel := p.withTimeout(ctx)
	defer cancel()
	results := make([]Result, 0, len(es))
	for start := 0; start < len(es); start += MaxBatch {
		chunk := es[start:min(start+MaxBatch, len(es))]
		res, err := p.appendChunk(ctx, chunk)
		if err != nil {
			return nil, err
		}
		results = append(results, res...)
	}
	return results, nil
}

func (p *Publisher) appendChunk(ctx context.Context, es []Event) ([]Result, error) {
	msgs := make([]*nats.Msg, len(es))
	for i, e := range es {
		m, err := message(e)
		if err != nil {
			return nil, err
		}
		msgs[i] = m
	}
	if len(msgs) == 1 {
		// A lone event (most often a group commit of one single-event
		// request) needs no batch to be atomic.
		r, err := p.publishOne(ctx, es[0], msgs[0])
		if err != nil {
			return nil, err
		}
		return []Result{r}, nil
	}
	const attempts = 3
	for attempt := 1; ; attempt++ {
		last, err := p.publishAtomic(ctx, msgs)
		if err == nil {
			first := last - uint64(len(es)) + 1
			results := make([]Result, len(es))
			for i, e := range es {
				results[i] = Result{ID: e.ID, Seq: first + uint64(i)}
			}
			return results, nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) {
			switch apiErr.ErrorCode {
			case errCodeBatchDuplicate:
				return p.appendOneByOne(ctx, es, msgs)
			case errCodeBatchIncomplete, errCodeBatchInflight:
				// Nothing of this batch was stored: safe to send it again.
				if attempt < attempts {
					if err := sleepCtx(ctx, time.Duration(attempt)*10*time.Millisecond); err != nil {
						return nil, unavailable("append batch", err)
					}
					continue
				}
			case errCodeAtomicDisabled:
				return nil, unavailable("append batch", fmt.Errorf("stream %s does not allow atomic publish; run `eventline migrate` (as the NATS admin) to update it: %w", p.stream, err))
			}
		}
		return nil, unavailable("append batch", err)
	}
}

// AppendEach appends events that Normalize has already accepted, each on
// its own: one ordinary durable publish per event, all sent before any ack
// is awaited (pipelined), so the round trips overlap. Unlike
// AppendNormalized nothing ties the events together: results[i] is event
// i's outcome when errs[i] is nil, and an event whose errs[i] wraps
// ErrUnavailable may or may not be stored (a retry is de-duplicated by its
// id, docs/contract.md §2 Ingest). It is how the ingest service's group
// commit appends concurrent single-event requests, which need no atomic
// batch: each request is atomic on its own (docs/architecture.md §3).
// A repeated id is reported as a duplicate of its first occurrence.
func (p *Publisher) AppendEach(ctx context.Context, es []Event) ([]Result, []error) {
	ctx, cancel := p.withTimeout(ctx)
	defer cancel()
	results := make([]Result, len(es))
	errs := make([]error, len(es))
	msgs := make([]*nats.Msg, len(es))
	futures := make([]jetstream.PubAckFuture, len(es))
	for i, e := range es {
		m, err := message(e)
		if err != nil {
			errs[i] = err
			continue
		}
		msgs[i] = m
		f, err := p.js.PublishMsgAsync(m, jetstream.WithExpectStream(p.stream))
		if err != nil {
			errs[i] = unavailable("append event", err)
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			r := Result{ID: es[i].ID, Seq: ack.Sequence, Duplicate: ack.Duplicate}
			if ack.Stream != p.stream {
				errs[i] = unavailable("append event", fmt.Errorf("stored in stream %q, expected %q", ack.Stream, p.stream))
				continue
			}
			if r.Duplicate {
				r, errs[i] = p.ownDuplicate(ctx, es[i], msgs[i], r)
			}
			results[i] = r
		case err := <-f.Err():
			errs[i] = unavailable("append event", err)
		case <-ctx.Done():
			errs[i] = unavailable("append event", ctx.Err())
		}
	}
	return results, errs
}

// batchSeqValues[i] is the header value of Nats-Batch-Sequence i+1, and
// batchCommitValue the one of Nats-Batch-Commit: made once rather than
// for every message of every batch.
var (
	batchSeqValues = func() (v [MaxBatch][]string) {
		for i := range v {
			v[i] = []string{strconv.Itoa(i + 1)}
		}
		return v
	}()
	batchCommitValue = []string{"1"}
)

// publishAtomic sends msgs as one atomic batch and returns the stream
// sequence of the last one. Every message but the last is published without
// waiting; the server answers the commit with the outcome of the whole batch.
func (p *Publisher) publishAtomic(ctx context.Context, msgs []*nats.Msg) (uint64, error) {
	if len(msgs) > MaxBatch {
		return 0, fmt.Errorf("an atomic batch of %d messages; at most %d", len(msgs), MaxBatch)
	}
	id := nuid.Next()
	// One value slice for the whole batch's id, and the sequence numbers
	// made once: nats.go only reads header values, and a slice of capacity
	// 1 is copied by any append.
	idValue := []string{id}
	for i, m := range msgs {
		m.Header[hdrBatchID] = idValue
		m.Header[hdrBatchSeq] = batchSeqValues[i]
		if i == len(msgs)-1 {
			m.Header[hdrBatchCommit] = batchCommitValue
			break
		}
		if err := p.nc.PublishMsg(m); err != nil {
			return 0, fmt.Errorf("publish batch message %d: %w", i+1, err)
		}
	}
	resp, err := p.nc.RequestMsgWithContext(ctx, msgs[len(msgs)-1])
	for _, m := range msgs { // leave msgs reusable for the one-by-one fallback
		m.Header.Del(hdrBatchID)
		m.Header.Del(hdrBatchSeq)
		m.Header.Del(hdrBatchCommit)
	}
	if err != nil {
		return 0, fmt.Errorf("commit batch: %w", err)
	}
	var ack struct {
		jetstream.PubAck
		Batch string              `json:"batch"`
		Count int                 `json:"count"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("decode batch ack %q: %w", resp.Data, err)
	}
	if ack.Error != nil {
		return 0, ack.Error
	}
	if ack.Stream != p.stream {
		return 0, fmt.Errorf("batch stored in stream %q, expected %q", ack.Stream, p.stream)
	}
	if ack.Batch != id || ack.Count != len(msgs) {
		return 0, fmt.Errorf("batch ack for %q with %d messages does not match batch %q of %d; is the server >= %s?", ack.Batch, ack.Count, id, len(msgs), MinServerVersion)
	}
	return ack.Sequence, nil
}

// appendOneByOne publishes each message on its own, pipelined, and waits
// for every ack. The server processes them in order, so a repeated id within
// the list is reported as a duplicate of its first occurrence.
func (p *Publisher) appendOneByOne(ctx context.Context, es []Event, msgs []*nats.Msg) ([]Result, error) {
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		f, err := p.js.PublishMsgAsync(m, jetstream.WithExpectStream(p.stream))
		if err != nil {
			return nil, unavailable("append event", err)
		}
		futures[i] = f
	}
	results := make([]Result, len(es))
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			results[i] = Result{ID: es[i].ID, Seq: ack.Sequence, Duplicate: ack.Duplicate}
			if ack.Duplicate {
				r, err := p.ownDuplicate(ctx, es[i], msgs[i], results[i])
				if err != nil {
					return nil, err
				}
				results[i] = r
			}
		case err := <-f.Err():
			return nil, unavailable("append event", err)
		case <-ctx.Done():
			return nil, unavailable("append event", ctx.Err())
		}
	}
	return results, nil
}

// message encodes a normalized event as a stream message: its input form
// (with the id and occurred_at Normalize filled in) as the body; consumers
// derive recorded_at, type and seq from the message (ParseStored).
func message(e Event) (*nats.Msg, error) {
	subject, err := Subject(e.Tenant, e.Eventable.Type, e.Action)
	if err != nil {
		return nil, err
	}
	body, err := e.MarshalInput()
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	// Room for the batch headers publishAtomic adds, so the map does not
	// grow per message.
	m := &nats.Msg{Subject: subject, Data: body, Header: make(nats.Header, 6)}
	m.Header.Set(HeaderMsgID, MsgID(e.Tenant, e.ID))
	m.Header.Set("Content-Type", "application/json")
	if e.Traceparent != "" {
		m.Header.Set("traceparent", e.Traceparent)
	}
	return m, nil
}

func (p *Publisher) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || p.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, p.timeout)
}

func unavailable(what string, err error) error {
	return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
