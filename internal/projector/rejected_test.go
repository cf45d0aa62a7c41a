package projector

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/consume"
	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// published is a message a producer put on the stream, and what the stream
// made of it.
type published struct {
	name    string
	subject string
	body    string
	msgID   string
	tenant  string // who must see its rejection; "" for nobody
	reason  string // its metric reason; "" for a valid message
	// sameAsIngest: the body alone is at fault, so the errors are exactly
	// those POST /v1/events gives for it (events.DecodeForTenant).
	sameAsIngest bool
	seq          uint64
	at           time.Time
}

// publish puts m on the stream as a producer in any language does: a
// plain NATS publish of the HTTP body, with Nats-Msg-Id when given.
func (b *bundle) publish(t *testing.T, nc *nats.Conn, m *published) {
	t.Helper()
	ctx := context.Background()
	msg := nats.NewMsg(m.subject)
	msg.Data = []byte(m.body)
	if m.msgID != "" {
		msg.Header.Set(events.HeaderMsgID, m.msgID)
	}
	reply, err := nc.RequestMsg(msg, 5*time.Second) // a JetStream publish: the reply is the PubAck
	require.NoError(t, err)
	var ack struct {
		Seq   uint64 `json:"seq"`
		Error any    `json:"error"`
	}
	require.NoError(t, json.Unmarshal(reply.Data, &ack), "%s", reply.Data)
	require.Nil(t, ack.Error, "%s", reply.Data)
	str, err := b.js.Stream(ctx, events.StreamName)
	require.NoError(t, err)
	stored, err := str.GetMsg(ctx, ack.Seq)
	require.NoError(t, err)
	m.seq, m.at = ack.Seq, stored.Time
}

// message is m as a consumer reads it.
func (m *published) message() events.Message {
	var h nats.Header
	if m.msgID != "" {
		h = nats.Header{events.HeaderMsgID: {m.msgID}}
	}
	return events.Message{Subject: m.subject, Data: []byte(m.body), Header: h, Seq: m.seq, Timestamp: m.at}
}

type rejectedResp struct {
	status int
	page   struct {
		RejectedEvents []deadletter.Rejection `json:"rejected_events"`
		NextCursor     *string                `json:"next_cursor"`
	}
	problem map[string]any
}

func (b *bundle) rejected(t *testing.T, key string, params url.Values) rejectedResp {
	t.Helper()
	var r rejectedResp
	r.status, r.problem = b.getJSON(t, key, "/v1/rejected-events", params, &r.page)
	return r
}

// seqs walks every page of a tenant's rejections, limit at a time.
func (b *bundle) rejectedSeqs(t *testing.T, key string, limit int) []uint64 {
	t.Helper()
	var out []uint64
	params := url.Values{"limit": {strconv.Itoa(limit)}}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 100)
		r := b.rejected(t, key, params)
		require.Equal(t, http.StatusOK, r.status, r.problem)
		for _, re := range r.page.RejectedEvents {
			out = append(out, re.Seq)
		}
		if r.page.NextCursor == nil {
			return out
		}
		params.Set("cursor", *r.page.NextCursor)
	}
}

// otherConsumer runs a second consumer of the stream on the path the
// notifier and the webhooker take (consume.Event, then consume.Letter and
// deadletter.Add), and returns the ids of the events it handled.
func otherConsumer(t *testing.T, b *bundle, name string) func() []string {
	t.Helper()
	ctx := context.Background()
	_, err := consume.Ensure(ctx, b.js, name, "stands for the notifier and the webhooker", 5, 0)
	require.NoError(t, err)
	var mu sync.Mutex
	var handled []string
	nc := b.nats.Connect(t)
	router, err := consume.NewRouter(nc, consume.Config{Consumer: name, Name: name, Handlers: 2, MaxDeliver: 5, Log: b.log,
		Handle: func(msg *message.Message) error {
			ev, err := consume.Event(msg)
			if err != nil {
				return err
			}
			mu.Lock()
			handled = append(handled, ev.ID)
			mu.Unlock()
			return nil
		},
		DeadLetter: func(ctx context.Context, msg *message.Message, cause error) error {
			return deadletter.Add(ctx, b.pool, consume.Letter(name, msg, cause))
		}})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- router.Run(runCtx) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(handled)
	}
}

// TestRejectionsVisibleToTheirTenant publishes, as a producer in any
// language does, valid and invalid messages. The valid ones reach the
// timeline, also when they come after invalid ones, and the second
// consumer handles them. Each invalid one is one rejection, whichever
// consumers rejected it, listed by GET /v1/rejected-events for its tenant
// only (newest first, in pages), with the field errors the consumers gave
// (exactly POST /v1/events' when the body alone is at fault), its id and
// the start of its body, and counted once in the metric. Bytes Postgres
// text cannot hold (a subject with 0xff, a key with NUL) hold up nothing.
func TestRejectionsVisibleToTheirTenant(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	const refs = `"eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}`
	msgs := []*published{
		{name: "valid", subject: "events.acme.card.closed", body: `{"id":"ok-1","action":"closed",` + refs + `}`, msgID: "acme:ok-1"},
		{name: "bad JSON", subject: "events.acme.card.closed", body: `{"id":"bad-json","action":`, tenant: "acme", reason: "body", sameAsIngest: true},
		{name: "empty body", subject: "events.acme.card.closed", body: ``, tenant: "acme", reason: "body", sameAsIngest: true},
		{name: "missing action", subject: "events.acme.card.closed", body: `{"id":"no-action",` + refs + `}`, msgID: "acme:no-action",
			tenant: "acme", reason: "action", sameAsIngest: true},
		{name: "unknown field", subject: "events.acme.card.closed", body: `{"id":"unknown","board_id":"b1","action":"closed",` + refs + `}`,
			tenant: "acme", reason: "unknown_field", sameAsIngest: true},
		{name: "lone surrogate in particulars", subject: "events.acme.card.closed",
			body: `{"id":"surrogate","action":"closed",` + refs + `,"particulars":{"s":"\ud800"}}`, tenant: "acme", reason: "particulars", sameAsIngest: true},
		{name: "key with NUL", subject: "events.acme.card.closed", body: `{"id":"nul-key","action":"closed",` + refs + `,"a\u0000":1}`,
			tenant: "acme", reason: "unknown_field", sameAsIngest: true},
		{name: "body of another tenant", subject: "events.acme.card.closed", body: `{"id":"foreign","tenant":"globex","action":"closed",` + refs + `}`,
			tenant: "acme", reason: "tenant"},
		{name: "foreign Nats-Msg-Id", subject: "events.acme.card.closed", body: `{"id":"msgid","action":"closed",` + refs + `}`, msgID: "globex:msgid",
			tenant: "acme", reason: "Nats-Msg-Id"},
		{name: "subject with 0xff", subject: "events.acme.card.\xff", body: `{"id":"ff","action":"closed",` + refs + `}`, tenant: "acme", reason: "subject"},
		{name: "subject without a tenant", subject: "events.Acme.card.closed", body: `{"id":"no-tenant","action":"closed",` + refs + `}`, reason: "subject"},
		{name: "globex's", subject: "events.globex.card.closed", body: `{` + refs + `}`, tenant: "globex", reason: "action", sameAsIngest: true},
		{name: "valid after them", subject: "events.acme.card.closed", body: `{"id":"ok-2","action":"closed",` + refs + `}`, msgID: "acme:ok-2"},
	}
	producer := b.nats.Connect(t)
	for _, m := range msgs {
		b.publish(t, producer, m)
	}
	b.worker(t, Config{}, nil)
	handled := otherConsumer(t, b, "second")
	ctx := context.Background()

	b.waitEvents(t, 2)
	letters := b.waitLetters(t, len(msgs)-2)
	testenv.Poll(t, 10*time.Second, "the second consumer dead-lettered them too and handled the valid ones", func() bool {
		var n int
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM eventline.dead_letters WHERE consumer = 'second'`).Scan(&n))
		return n == len(msgs)-2 && len(handled()) == 2
	})
	require.ElementsMatch(t, []string{"ok-1", "ok-2"}, handled())
	var rows int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM eventline.rejected_events`).Scan(&rows))
	require.Equal(t, len(msgs)-2, rows, "one rejection per message, two consumers rejected each")

	want := map[string][]uint64{}
	counts := map[[2]string]float64{}
	for _, m := range msgs {
		if m.reason == "" {
			continue
		}
		require.Contains(t, letters, m.seq, m.name)
		if m.tenant != "" {
			want[m.tenant] = append([]uint64{m.seq}, want[m.tenant]...) // newest first
		}
		label := m.tenant
		if label == "" {
			label = "_none"
		}
		counts[[2]string{label, m.reason}]++
	}
	for _, tenant := range []string{"acme", "globex"} {
		require.Equal(t, want[tenant], b.rejectedSeqs(t, b.keys[tenant], 2), "%s sees its own, newest first, in pages of 2", tenant)
	}

	r := b.rejected(t, b.keys["acme"], url.Values{"limit": {"200"}})
	require.Equal(t, http.StatusOK, r.status)
	require.Nil(t, r.page.NextCursor)
	bySeq := map[uint64]int{}
	for i, re := range r.page.RejectedEvents {
		bySeq[re.Seq] = i
	}
	for _, m := range msgs {
		i, listed := bySeq[m.seq]
		if m.tenant != "acme" {
			require.False(t, listed, m.name)
			continue
		}
		require.True(t, listed, m.name)
		got := r.page.RejectedEvents[i]
		_, err := events.ParseStored(m.message())
		var verr *events.ValidationError
		require.ErrorAs(t, err, &verr, m.name)
		require.Equal(t, verr.Errors, got.Errors, "%s: the errors every consumer gave", m.name)
		require.Equal(t, m.reason, deadletter.Reason(got.Errors), m.name)
		if m.sameAsIngest {
			_, err := events.DecodeForTenant([]byte(m.body), 0, "acme", m.at)
			var ingest *events.ValidationError
			require.ErrorAs(t, err, &ingest, m.name)
			require.Equal(t, ingest.Errors, got.Errors, "%s: the errors POST /v1/events gives for the body", m.name)
		}
		require.Equal(t, []byte(m.body), got.Body, m.name)
		require.Equal(t, len(m.body), got.BodySize, m.name)
		require.Equal(t, m.at.UTC().Truncate(time.Microsecond), got.StreamTime, m.name)
		require.WithinDuration(t, time.Now(), got.RejectedAt, time.Minute, m.name)
		require.Nil(t, got.ReplayedAt, m.name)
		if m.name == "bad JSON" || m.name == "empty body" {
			require.Nil(t, got.ID, "no id can be read from a body that is not JSON")
		} else {
			require.NotNil(t, got.ID, m.name)
			require.Contains(t, m.body, `"id":"`+*got.ID+`"`, m.name)
		}
	}
	// The tenant of the body differs: the field is the same as POST
	// /v1/events names, the message names the subject instead of the key.
	foreign := r.page.RejectedEvents[bySeq[msgs[7].seq]]
	require.Equal(t, "tenant", foreign.Errors[0].Field)
	require.Contains(t, foreign.Errors[0].Message, `is "globex" but the message is on tenant "acme"'s subject`)
	require.Equal(t, "events.acme.card.\uFFFD", r.page.RejectedEvents[bySeq[msgs[9].seq]].Subject)

	testenv.Poll(t, 5*time.Second, "the rejections counted", func() bool {
		for l, n := range counts {
			if testenv.CounterValue(t, b.metrics.rejected.WithLabelValues(l[0], l[1])) != n {
				return false
			}
		}
		return true
	})
	require.Equal(t, len(counts), series(b.metrics.rejected), "no other series: %v", counts)
}

// series counts the series c holds.
func series(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}

// TestRejectionCountedOnce: the projector stops between the commit that
// dead-letters a rejected message and its ack, so the message comes back
// and is dead-lettered again. It is still one rejection, counted once; the
// projector alone recorded it.
func TestRejectionCountedOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{AckWait: time.Second})
	ctx := context.Background()
	m := &published{subject: "events.acme.card.closed", body: `{"id":"no-action","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}}`}
	b.publish(t, b.nats.Connect(t), m)
	hook, crashed := crashAfterFirstCommit()
	stop := b.worker(t, Config{}, hook)
	<-crashed
	stop()
	b.worker(t, Config{}, nil)
	testenv.Poll(t, 10*time.Second, "the message dead-lettered again", func() bool {
		l, err := deadletter.NewStore(b.pool).Get(ctx, "projector", m.seq)
		return err == nil && l.Failures == 2
	})
	require.Equal(t, []uint64{m.seq}, b.rejectedSeqs(t, b.keys["acme"], 5))
	require.Equal(t, 1.0, testenv.CounterValue(t, b.metrics.rejected.WithLabelValues("acme", "action")))
}

// TestRejectedEventsParameters: bad parameters are a problem naming each
// one, as on the timelines; a cursor of another tenant or of a timeline is
// refused; the read scope is needed.
func TestRejectedEventsParameters(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	acme := b.keys["acme"]
	for _, tc := range []struct {
		params url.Values
		fields []string
	}{
		{url.Values{"limit": {"0"}}, []string{"limit"}},
		{url.Values{"limit": {"201"}}, []string{"limit"}},
		{url.Values{"limit": {"1", "2"}}, []string{"limit"}},
		{url.Values{"cursor": {"!!"}}, []string{"cursor"}},
		{url.Values{"cursor": {encodeCursorOf(cursorRejected, "globex", time.Now(), 1)}}, []string{"cursor"}},
		{url.Values{"cursor": {encodeCursor("acme", time.Now(), 1)}}, []string{"cursor"}},
		{url.Values{"since": {"yesterday"}}, []string{"since"}},
		{url.Values{"status": {"replayed"}}, []string{"status"}},
		{url.Values{"action": {"closed"}, "limit": {"x"}}, []string{"action", "limit"}},
	} {
		r := b.rejected(t, acme, tc.params)
		require.Equal(t, http.StatusBadRequest, r.status, "%v", tc.params)
		require.Equal(t, "urn:eventline:problem:validation", r.problem["type"])
		var fields []string
		for _, e := range r.problem["errors"].([]any) {
			fields = append(fields, e.(map[string]any)["field"].(string))
		}
		require.Equal(t, tc.fields, fields, "%v", tc.params)
	}
	for _, ok := range []url.Values{{"limit": {"200"}}, {"status": {"all"}}, {"status": {"pending"}, "since": {"2026-11-25T10:00:00.5+01:00"}},
		{"cursor": {encodeCursorOf(cursorRejected, "acme", time.Now(), 1)}}} {
		r := b.rejected(t, acme, ok)
		require.Equal(t, http.StatusOK, r.status, "%v %v", ok, r.problem)
		require.NotNil(t, r.page.RejectedEvents, "an empty list, not null")
	}
	require.Equal(t, http.StatusForbidden, b.rejected(t, b.keys["acme-ingest-only"], nil).status)
	require.Equal(t, http.StatusUnauthorized, b.rejected(t, "el_nope", nil).status)
}

// TestRejectedEventWireNames: an item of GET /v1/rejected-events has
// exactly the documented fields (docs/rejections.md), and no tenant.
func TestRejectedEventWireNames(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	raw, err := json.Marshal(deadletter.Rejection{Seq: 1, Tenant: "acme", Subject: "events.acme.card.closed", StreamTime: at, RejectedAt: at,
		Errors: []events.FieldError{{Field: "action", Message: "is required"}}, Body: []byte("{}"), BodySize: 2})
	require.NoError(t, err)
	require.JSONEq(t, `{"seq": 1, "subject": "events.acme.card.closed", "id": null,
		"errors": [{"index": 0, "field": "action", "message": "is required"}],
		"stream_time": "2026-11-25T10:00:00Z", "rejected_at": "2026-11-25T10:00:00Z", "replayed_at": null,
		"body_base64": "e30=", "body_size": 2}`, string(raw))
}

// TestRejectedTenantLabelBounded: the first MaxRejectedTenants tenants get
// a series each, later ones share "_other", and a subject without a
// tenant counts as "_none".
func TestRejectedTenantLabelBounded(t *testing.T) {
	t.Parallel()
	m := NewMetrics(prometheus.NewRegistry())
	errs := []events.FieldError{{Field: "action", Message: "is required"}}
	for i := range MaxRejectedTenants + 5 {
		m.rejection("t"+strconv.Itoa(i), errs)
	}
	m.rejection("t0", errs)
	m.rejection("", errs)
	require.Equal(t, MaxRejectedTenants+2, series(m.rejected))
	require.Equal(t, 2.0, testenv.CounterValue(t, m.rejected.WithLabelValues("t0", "action")), "a tenant seen before keeps its series")
	require.Equal(t, 5.0, testenv.CounterValue(t, m.rejected.WithLabelValues("_other", "action")))
	require.Equal(t, 1.0, testenv.CounterValue(t, m.rejected.WithLabelValues("_none", "action")))
}
