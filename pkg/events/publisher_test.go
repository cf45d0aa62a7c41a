package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

type bundle struct {
	nats *testenv.NATS
	nc   *nats.Conn
	pub  *events.Publisher
	str  jetstream.Stream
}

func setup(t *testing.T) bundle {
	t.Helper()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	str, err := stream.Ensure(context.Background(), nc, stream.Config{})
	require.NoError(t, err)
	pub, err := events.NewPublisher(nc, events.WithTimeout(5*time.Second))
	require.NoError(t, err)
	return bundle{nats: n, nc: nc, pub: pub, str: str}
}

func card(tenant, id string, n int) events.Event {
	return events.Event{
		ID:          id,
		Tenant:      tenant,
		Action:      "closed",
		Eventable:   events.Ref{Type: "card", ID: fmt.Sprintf("c%d", n)},
		Creator:     events.Ref{Type: "user", ID: "u7"},
		Parents:     []events.Ref{{Type: "board", ID: "b1"}},
		Particulars: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)),
	}
}

// stored reads every message of the stream.
func stored(t *testing.T, b bundle) []jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	info, err := b.str.Info(ctx)
	require.NoError(t, err)
	var out []jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := b.str.GetMsg(ctx, seq)
		require.NoError(t, err)
		out = append(out, *m)
	}
	return out
}

func TestAppendOne(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	res, err := b.pub.Append(ctx, card("acme", "", 1))
	require.NoError(t, err)
	require.Equal(t, uint64(1), res.Seq)
	require.False(t, res.Duplicate)
	require.NotEmpty(t, res.ID)

	msgs := stored(t, b)
	require.Len(t, msgs, 1)
	m := msgs[0]
	require.Equal(t, "events.acme.card.closed", m.Subject)
	require.Equal(t, "acme:"+res.ID, m.Header.Get("Nats-Msg-Id"))
	require.Equal(t, "application/json", m.Header.Get("Content-Type"))
	var body map[string]any
	require.NoError(t, json.Unmarshal(m.Data, &body))
	for _, system := range []string{"seq", "type", "recorded_at"} {
		require.NotContains(t, body, system, "the stream body is the input form: consumers derive %s", system)
	}
	require.Equal(t, res.ID, body["id"])
	require.Contains(t, body, "occurred_at", "the publisher fills occurred_at in")

	_, err = events.Decode(m.Data, 0, time.Now())
	require.NoError(t, err, "the stream body is a valid HTTP body")
	e, err := events.ParseStored(events.Message{Subject: m.Subject, Data: m.Data, Header: m.Header, Seq: m.Sequence, Timestamp: m.Time})
	require.NoError(t, err)
	require.Equal(t, res.ID, e.ID)
	require.Equal(t, m.Time.UTC().Truncate(time.Microsecond), e.RecordedAt, "recorded_at is the stream timestamp")
	require.Equal(t, "card.closed", e.Type)
	require.Equal(t, res.Seq, e.Seq)
}

func TestAppendSameIDIsDuplicate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	first, err := b.pub.Append(ctx, card("acme", "e1", 1))
	require.NoError(t, err)
	again, err := b.pub.Append(ctx, card("acme", "e1", 1))
	require.NoError(t, err)
	require.True(t, again.Duplicate)
	require.Equal(t, first.Seq, again.Seq)

	other, err := b.pub.Append(ctx, card("globex", "e1", 1))
	require.NoError(t, err)
	require.False(t, other.Duplicate, "another tenant's id e1 is a different event")
	require.Len(t, stored(t, b), 2)
}

func TestAppendBatchIsOrderedAndContiguous(t *testing.T) {
	t.Parallel()
	b := setup(t)
	es := make([]events.Event, 2500) // three atomic batches: 1000, 1000, 500
	for i := range es {
		es[i] = card("acme", fmt.Sprintf("e%d", i), i)
	}
	res, err := b.pub.AppendBatch(context.Background(), es)
	require.NoError(t, err)
	require.Len(t, res, len(es))
	for i, r := range res {
		require.Equal(t, fmt.Sprintf("e%d", i), r.ID)
		require.Equal(t, uint64(i+1), r.Seq)
		require.False(t, r.Duplicate)
	}
	msgs := stored(t, b)
	require.Len(t, msgs, len(es))
	for i, m := range msgs {
		var e events.Event
		require.NoError(t, json.Unmarshal(m.Data, &e))
		require.Equal(t, fmt.Sprintf("e%d", i), e.ID, "message %d", i)
	}
}

func TestAppendBatchWithStoredIDsFallsBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	old, err := b.pub.AppendBatch(ctx, []events.Event{card("acme", "old1", 1), card("acme", "old2", 2)})
	require.NoError(t, err)

	mixed := []events.Event{
		card("acme", "new1", 3), card("acme", "old2", 2), card("acme", "new2", 4),
		card("acme", "old1", 1), card("acme", "new1", 3), // repeated within the batch
		card("acme", "", 5),
	}
	res, err := b.pub.AppendBatch(ctx, mixed)
	require.NoError(t, err)
	require.Len(t, res, len(mixed))
	require.False(t, res[0].Duplicate)
	require.True(t, res[1].Duplicate)
	require.Equal(t, old[1].Seq, res[1].Seq)
	require.False(t, res[2].Duplicate)
	require.True(t, res[3].Duplicate)
	require.Equal(t, old[0].Seq, res[3].Seq)
	require.True(t, res[4].Duplicate, "second new1 in the same batch")
	require.Equal(t, res[0].Seq, res[4].Seq)
	require.False(t, res[5].Duplicate)
	require.Len(t, stored(t, b), 5, "2 old + new1, new2 and the id-less event")
}

func TestAppendBatchValidationIsAllOrNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bad := card("acme", "", 2)
	bad.Action = "Not Valid"
	_, err := b.pub.AppendBatch(context.Background(), []events.Event{card("acme", "", 1), bad, card("ac.me", "", 3)})
	var verr *events.ValidationError
	require.ErrorAs(t, err, &verr)
	require.Len(t, verr.Errors, 2)
	require.Equal(t, 1, verr.Errors[0].Index)
	require.Equal(t, "action", verr.Errors[0].Field)
	require.Equal(t, 2, verr.Errors[1].Index)
	require.Equal(t, "tenant", verr.Errors[1].Field)
	require.Empty(t, stored(t, b))
}

func TestAppendWithoutStreamIsUnavailable(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	pub, err := events.NewPublisher(n.Connect(t), events.WithTimeout(time.Second))
	require.NoError(t, err)
	_, err = pub.Append(context.Background(), card("acme", "", 1))
	require.ErrorIs(t, err, events.ErrUnavailable)
	_, err = pub.AppendBatch(context.Background(), []events.Event{card("acme", "", 1), card("acme", "", 2)})
	require.ErrorIs(t, err, events.ErrUnavailable)
}

func TestAppendBatchToStreamWithoutAtomicPublish(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"events.>"}})
	require.NoError(t, err)
	pub, err := events.NewPublisher(nc, events.WithTimeout(2*time.Second))
	require.NoError(t, err)
	_, err = pub.AppendBatch(context.Background(), []events.Event{card("acme", "", 1), card("acme", "", 2)})
	require.ErrorIs(t, err, events.ErrUnavailable)
	require.Contains(t, err.Error(), "atomic publish")
}

func TestAppendWhileServerDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.nats.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := b.pub.AppendBatch(ctx, []events.Event{card("acme", "", 1), card("acme", "", 2)})
	require.True(t, errors.Is(err, events.ErrUnavailable), "got %v", err)
}

// withoutAtomicPublish is a publisher on an EVENTS stream that refuses
// atomic batches: what it appends went through an ordinary publish.
func withoutAtomicPublish(t *testing.T) (*nats.Conn, jetstream.Stream, *events.Publisher) {
	t.Helper()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	str, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"events.>"}, AllowDirect: true})
	require.NoError(t, err)
	pub, err := events.NewPublisher(nc, events.WithTimeout(2*time.Second))
	require.NoError(t, err)
	return nc, str, pub
}

// TestLoneEventIsAPlainPublish: a batch of one event (a group commit of one
// single-event request) is an ordinary publish with the same message id and
// headers, and a re-send of its id is a duplicate of it.
func TestLoneEventIsAPlainPublish(t *testing.T) {
	t.Parallel()
	_, str, pub := withoutAtomicPublish(t)
	ctx := context.Background()
	first, err := pub.AppendBatch(ctx, []events.Event{card("acme", "e1", 1)})
	require.NoError(t, err, "one event needs no atomic batch")
	require.Equal(t, []events.Result{{ID: "e1", Seq: 1}}, first)

	again, err := pub.AppendBatch(ctx, []events.Event{card("acme", "e1", 1)})
	require.NoError(t, err)
	require.Equal(t, []events.Result{{ID: "e1", Seq: 1, Duplicate: true}}, again)
	one, err := pub.Append(ctx, card("acme", "e1", 1))
	require.NoError(t, err)
	require.Equal(t, events.Result{ID: "e1", Seq: 1, Duplicate: true}, one, "Append and AppendBatch de-duplicate alike")

	info, err := str.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs)
	m, err := str.GetMsg(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "events.acme.card.closed", m.Subject)
	require.Equal(t, "acme:e1", m.Header.Get(events.HeaderMsgID))
	require.Equal(t, "application/json", m.Header.Get("Content-Type"))
	for _, h := range []string{"Nats-Batch-Id", "Nats-Batch-Sequence", "Nats-Batch-Commit"} {
		require.Empty(t, m.Header.Get(h), h)
	}

	_, err = pub.AppendBatch(ctx, []events.Event{card("acme", "e2", 2), card("acme", "e3", 3)})
	require.ErrorIs(t, err, events.ErrUnavailable, "two events are still an atomic batch")
}

// TestLoneEventForeignDuplicateIsNotTrusted: another tenant's message
// holding acme's message id does not make acme's lone event a duplicate;
// the event is appended, and a re-send finds it.
func TestLoneEventForeignDuplicateIsNotTrusted(t *testing.T) {
	t.Parallel()
	nc, str, pub := withoutAtomicPublish(t)
	ctx := context.Background()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	forged := nats.NewMsg("events.globex.card.closed")
	forged.Header.Set(events.HeaderMsgID, "acme:stolen-1")
	forged.Data = []byte(`{"id":"stolen-1","action":"closed","eventable":{"type":"card","id":"x"},"creator":{"type":"user","id":"mallory"}}`)
	foreign, err := js.PublishMsg(ctx, forged)
	require.NoError(t, err)

	res, err := pub.AppendBatch(ctx, []events.Event{card("acme", "stolen-1", 1)})
	require.NoError(t, err)
	require.False(t, res[0].Duplicate, "globex's message is not acme's event")
	require.NotEqual(t, foreign.Sequence, res[0].Seq)
	again, err := pub.AppendBatch(ctx, []events.Event{card("acme", "stolen-1", 1)})
	require.NoError(t, err)
	require.True(t, again[0].Duplicate, "a re-send finds acme's own append")
	require.Equal(t, res[0].Seq, again[0].Seq)

	m, err := str.GetMsg(ctx, res[0].Seq)
	require.NoError(t, err)
	require.Equal(t, "events.acme.card.closed", m.Subject)
}

// onePerSubject limits b's stream to one message per subject, refusing
// more (discard new per subject): the server then refuses an event of a
// tenant that already has one, and takes every other.
func onePerSubject(t *testing.T, b bundle) {
	t.Helper()
	ctx := context.Background()
	info, err := b.str.Info(ctx)
	require.NoError(t, err)
	cfg := info.Config
	cfg.MaxMsgsPerSubject = 1
	cfg.Discard = jetstream.DiscardNew
	cfg.DiscardNewPerSubject = true
	js, err := jetstream.New(b.nc)
	require.NoError(t, err)
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
}

// TestAppendEachReportsEachOutcome: AppendEach publishes each event on its
// own; one the server refuses fails alone, the others are stored, and a
// repeated id is a duplicate of its first occurrence.
func TestAppendEachReportsEachOutcome(t *testing.T) {
	t.Parallel()
	b := setup(t)
	onePerSubject(t, b)
	ctx := context.Background()
	full, err := b.pub.Append(ctx, card("full", "f0", 0))
	require.NoError(t, err)

	es := []events.Event{card("t1", "a", 1), card("full", "f1", 2), card("t2", "c", 3), card("t1", "a", 1)}
	for i := range es {
		require.NoError(t, es[i].Normalize(time.Now()))
	}
	res, errs := b.pub.AppendEach(ctx, es)
	require.Len(t, res, 4)
	require.Len(t, errs, 4)
	require.NoError(t, errs[0])
	require.ErrorIs(t, errs[1], events.ErrUnavailable, "the full subject refuses its event")
	require.NoError(t, errs[2])
	require.NoError(t, errs[3])
	require.False(t, res[0].Duplicate)
	require.False(t, res[2].Duplicate)
	require.Equal(t, events.Result{ID: "a", Seq: res[0].Seq, Duplicate: true}, res[3], "the repeated id is its first occurrence")

	msgs := stored(t, b)
	var got []string
	for _, m := range msgs {
		got = append(got, m.Header.Get(events.HeaderMsgID))
	}
	require.Equal(t, []string{"full:f0", "t1:a", "t2:c"}, got, "exactly the events reported stored are stored")
	require.Equal(t, full.Seq, msgs[0].Sequence)

	// Sent again (a client retrying), the stored ones come back duplicate
	// with their original sequence.
	again, errs := b.pub.AppendEach(ctx, []events.Event{es[0], es[2]})
	require.Equal(t, []error{nil, nil}, errs)
	require.Equal(t, []events.Result{{ID: "a", Seq: res[0].Seq, Duplicate: true}, {ID: "c", Seq: res[2].Seq, Duplicate: true}}, again)
	require.Len(t, stored(t, b), 3)
}

// TestAppendEachForeignDuplicateIsNotTrusted: as for a lone event, another
// tenant's message holding the id does not make the event a duplicate.
func TestAppendEachForeignDuplicateIsNotTrusted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	js, err := jetstream.New(b.nc)
	require.NoError(t, err)
	forged := nats.NewMsg("events.globex.card.closed")
	forged.Header.Set(events.HeaderMsgID, "acme:stolen-1")
	forged.Data = []byte(`{"id":"stolen-1","action":"closed","eventable":{"type":"card","id":"x"},"creator":{"type":"user","id":"mallory"}}`)
	foreign, err := js.PublishMsg(ctx, forged)
	require.NoError(t, err)

	e := card("acme", "stolen-1", 1)
	require.NoError(t, e.Normalize(time.Now()))
	res, errs := b.pub.AppendEach(ctx, []events.Event{e})
	require.NoError(t, errs[0])
	require.False(t, res[0].Duplicate, "globex's message is not acme's event")
	require.NotEqual(t, foreign.Sequence, res[0].Seq)
	m, err := b.str.GetMsg(ctx, res[0].Seq)
	require.NoError(t, err)
	require.Equal(t, "events.acme.card.closed", m.Subject)
}

// TestAppendEachWithoutStreamIsUnavailable: no stream, every event fails
// with ErrUnavailable (no responders), none is reported stored.
func TestAppendEachWithoutStreamIsUnavailable(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	pub, err := events.NewPublisher(n.Connect(t), events.WithTimeout(2*time.Second))
	require.NoError(t, err)
	es := []events.Event{card("acme", "x1", 1), card("acme", "x2", 2)}
	for i := range es {
		require.NoError(t, es[i].Normalize(time.Now()))
	}
	_, errs := pub.AppendEach(context.Background(), es)
	for _, err := range errs {
		require.ErrorIs(t, err, events.ErrUnavailable)
	}
}
