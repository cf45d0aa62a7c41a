package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/pkg/events"
)

// TestThreeReplicasOneStoppedMidBatch runs three workers on the shared
// durable while events flow; one is stopped in the middle of a batch (after
// fetching, before committing). Its messages are redelivered to the others
// and every event is projected exactly once.
func TestThreeReplicasOneStoppedMidBatch(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{AckWait: time.Second})
	ctx := context.Background()

	var stoppedMid atomic.Bool
	hold := make(chan struct{})
	var victimOnce sync.Once
	victim := b.worker(t, Config{BatchSize: 50}, func(stage string, n int) error {
		if stage == "before_commit" && n > 1 {
			var first bool
			victimOnce.Do(func() { first = true })
			if first {
				close(hold) // holding a fetched, uncommitted batch
				stoppedMid.Store(true)
				return errors.New("stopped mid-batch")
			}
		}
		return nil
	})
	b.worker(t, Config{BatchSize: 50}, nil)
	b.worker(t, Config{BatchSize: 50}, nil)

	const n = 3000
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 6 * 50 {
				batch := make([]events.Event, 0, 50)
				for j := i; j < min(i+6*50, n); j += 6 {
					batch = append(batch, ev("acme", fmt.Sprintf("e%d", j), "card", fmt.Sprintf("c%d", j%50), "moved", events.Ref{Type: "board", ID: "b1"}))
				}
				if _, err := b.pub.AppendBatch(ctx, batch); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	<-hold
	victim()
	wg.Wait()
	require.True(t, stoppedMid.Load())
	b.waitEvents(t, n)
	require.Eventually(t, func() bool {
		info, err := b.cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, 30*time.Second, 20*time.Millisecond)
	got, entries := b.count(t)
	require.Equal(t, n, got)
	require.Equal(t, 2*n, entries)
}

// TestPoisonMessageIsDeadLettered publishes messages that bypass validation:
// they land in the dead-letter table with their error and sequence, they
// are terminated rather than redelivered, and the events around them are
// projected.
func TestPoisonMessageIsDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	ctx := context.Background()
	_, err := b.pub.Append(ctx, ev("acme", "before", "card", "c1", "created"))
	require.NoError(t, err)
	raw := func(subject, body string) uint64 {
		m := nats.NewMsg(subject)
		m.Data = []byte(body)
		ack, err := b.js.PublishMsg(ctx, m)
		require.NoError(t, err)
		return ack.Sequence
	}
	notJSON := raw("events.acme.card.closed", "this is not json")
	wrongSubject := raw("events.globex.card.closed", `{"id":"x1","tenant":"acme","action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"},"occurred_at":"2026-01-01T00:00:00Z","recorded_at":"2026-01-01T00:00:00Z","type":"card.closed"}`)
	_, err = b.pub.Append(ctx, ev("acme", "after", "card", "c1", "closed"))
	require.NoError(t, err)

	b.worker(t, Config{}, nil)
	b.waitEvents(t, 2)
	bySeq := b.waitLetters(t, 2)
	require.Contains(t, bySeq[notJSON].Error, "must be a JSON object")
	require.Equal(t, "this is not json", string(bySeq[notJSON].Data))
	require.Contains(t, bySeq[wrongSubject].Error, "subject")
	require.Equal(t, "events.globex.card.closed", bySeq[wrongSubject].Subject)
	require.Eventually(t, func() bool {
		info, err := b.cons.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	}, 10*time.Second, 10*time.Millisecond, "poison messages are acked (terminated), not redelivered")
}

// TestProjectsWhatAnyLanguagePublishes: a producer publishing straight to
// NATS sends the HTTP body. The projector derives recorded_at, type and seq
// from the message (and an id when there is none), and dead-letters what
// HTTP ingest would refuse, keeping the stream time and Nats-Msg-Id.
func TestProjectsWhatAnyLanguagePublishes(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	ctx := context.Background()
	raw := func(subject, body string, msgID string) (uint64, time.Time) {
		m := nats.NewMsg(subject)
		m.Data = []byte(body)
		if msgID != "" {
			m.Header.Set("Nats-Msg-Id", msgID)
		}
		ack, err := b.js.PublishMsg(ctx, m)
		require.NoError(t, err)
		sm, err := b.js.Stream(ctx, events.StreamName)
		require.NoError(t, err)
		stored, err := sm.GetMsg(ctx, ack.Sequence)
		require.NoError(t, err)
		return ack.Sequence, stored.Time
	}
	const input = `"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}`
	withID, withIDTime := raw("events.acme.card.closed", `{"id":"n1",`+input+`}`, "acme:n1")
	noID, noIDTime := raw("events.acme.card.closed", `{`+input+`,"particulars":{"n":1}}`, "")
	unknown, unknownTime := raw("events.acme.card.closed", `{"id":"n2","board_id":"b1",`+input+`}`, "acme:n2")
	badMsgID, _ := raw("events.acme.card.closed", `{"id":"n3",`+input+`}`, "globex:n3")

	b.worker(t, Config{}, nil)
	b.waitEvents(t, 2)
	e, err := b.store.Get(ctx, "acme", "n1")
	require.NoError(t, err)
	require.Equal(t, withID, e.Seq)
	require.Equal(t, "card.closed", e.Type)
	require.Equal(t, withIDTime.UTC().Truncate(time.Microsecond), e.RecordedAt, "recorded_at is the stream timestamp")
	require.Equal(t, e.RecordedAt, e.OccurredAt, "occurred_at defaults to recorded_at")
	derived := events.StreamEventID(noIDTime, noID)
	e, err = b.store.Get(ctx, "acme", derived)
	require.NoError(t, err, "the id-less event is stored under the id derived from its stream time and seq")
	require.Equal(t, noID, e.Seq)

	bySeq := b.waitLetters(t, 2)
	require.Contains(t, bySeq[unknown].Error, "board_id: is not a field of an event", "unknown fields are refused as on HTTP")
	require.Equal(t, unknownTime.UTC().Truncate(time.Microsecond), bySeq[unknown].StreamTime, "the letter keeps the stream time")
	require.Equal(t, "acme:n2", bySeq[unknown].MsgID)
	require.Contains(t, bySeq[badMsgID].Error, `Nats-Msg-Id: is "globex:n3" but must be "acme:n3"`)
}

// waitLetters waits until the projector has n dead letters and returns
// them by stream sequence.
func (b *bundle) waitLetters(t *testing.T, n int) map[uint64]deadletter.Letter {
	t.Helper()
	dl := deadletter.NewStore(b.pool)
	var letters []deadletter.Letter
	require.Eventually(t, func() bool {
		var err error
		letters, err = dl.List(context.Background(), deadletter.ListParams{Consumer: "projector"})
		return err == nil && len(letters) == n
	}, 10*time.Second, 10*time.Millisecond, "want %d dead letters", n)
	bySeq := map[uint64]deadletter.Letter{}
	for _, l := range letters {
		bySeq[l.StreamSeq] = l
	}
	return bySeq
}

// TestTenantIsolation: a key of one tenant never sees another's events,
// whatever path, filter or cursor it sends.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	b.worker(t, Config{}, nil)
	ctx := context.Background()
	var in []events.Event
	for i := range 30 {
		in = append(in, ev("acme", fmt.Sprintf("a%d", i), "card", "c1", "moved", events.Ref{Type: "board", ID: "shared"}))
		in = append(in, ev("globex", fmt.Sprintf("g%d", i), "card", "c1", "moved", events.Ref{Type: "board", ID: "shared"}))
	}
	_, err := b.pub.AppendBatch(ctx, in)
	require.NoError(t, err)
	b.waitEvents(t, len(in))

	for tenant, prefix := range map[string]string{"acme": "a", "globex": "g"} {
		key := b.keys[tenant]
		seen := 0
		for _, path := range []string{"/v1/activity", "/v1/timelines/board/shared", "/v1/timelines/card/c1"} {
			var cursor string
			for {
				params := url.Values{"limit": {"7"}}
				if cursor != "" {
					params.Set("cursor", cursor)
				}
				r := b.get(t, key, path, params)
				require.Equal(t, http.StatusOK, r.status)
				for _, e := range r.page.Events {
					require.True(t, strings.HasPrefix(e.ID, prefix), "%s saw %s on %s", tenant, e.ID, path)
					require.Equal(t, tenant, e.Tenant)
					seen++
				}
				if r.page.NextCursor == nil {
					break
				}
				cursor = *r.page.NextCursor
			}
		}
		require.Equal(t, 90, seen)
		other := map[string]string{"acme": "g0", "globex": "a0"}[tenant]
		require.Equal(t, http.StatusNotFound, b.get(t, key, "/v1/events/"+other, nil).status)
	}

	// A cursor issued to globex, or forged for globex, is refused for acme.
	r := b.get(t, b.keys["globex"], "/v1/activity", url.Values{"limit": {"1"}})
	require.NotNil(t, r.page.NextCursor)
	forged := encodeCursor("globex", time.Now().Add(time.Hour), 1<<40)
	for _, c := range []string{*r.page.NextCursor, forged, "garbage", encodeCursor("acme", time.Now(), 1) + "x"} {
		r := b.get(t, b.keys["acme"], "/v1/activity", url.Values{"cursor": {c}})
		require.Equal(t, http.StatusBadRequest, r.status, c)
	}
	// A hand-made acme cursor positioned anywhere still yields only acme rows.
	r = b.get(t, b.keys["acme"], "/v1/activity", url.Values{"cursor": {encodeCursor("acme", time.Now().Add(time.Hour), 1<<40)}, "limit": {"200"}})
	require.Equal(t, http.StatusOK, r.status)
	require.Len(t, r.page.Events, 30)
	for _, e := range r.page.Events {
		require.Equal(t, "acme", e.Tenant)
	}
}

// TestPaginationIsCompleteWhileEventsArrive walks every page of a board's
// timeline with a small limit while new events keep arriving: every event
// that existed when the walk began is returned once, in order.
func TestPaginationIsCompleteWhileEventsArrive(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	b.worker(t, Config{}, nil)
	ctx := context.Background()
	const n = 400
	base := time.Now().Add(-time.Hour)
	in := make([]events.Event, n)
	for i := range in {
		in[i] = ev("acme", fmt.Sprintf("e%03d", i), "card", fmt.Sprintf("c%d", i%9), "moved", events.Ref{Type: "board", ID: "b1"})
		in[i].OccurredAt = base.Add(time.Duration(i/3) * time.Second) // ties on occurred_at: seq breaks them
	}
	_, err := b.pub.AppendBatch(ctx, in)
	require.NoError(t, err)
	b.waitEvents(t, n)

	stop := make(chan struct{})
	arriving := make(chan struct{})
	go func() {
		defer close(arriving)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, err := b.pub.Append(ctx, ev("acme", fmt.Sprintf("new%d", i), "card", "c1", "moved", events.Ref{Type: "board", ID: "b1"}))
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var walked []events.Event
	cursor := ""
	first := true
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000)
		params := url.Values{"limit": {"13"}}
		if cursor != "" {
			params.Set("cursor", cursor)
		}
		r := b.get(t, b.keys["acme"], "/v1/timelines/board/b1", params)
		require.Equal(t, http.StatusOK, r.status)
		for _, e := range r.page.Events {
			if first && strings.HasPrefix(e.ID, "new") {
				continue // arrived before the walk began
			}
			walked = append(walked, e)
		}
		first = false
		if r.page.NextCursor == nil {
			break
		}
		cursor = *r.page.NextCursor
	}
	close(stop)
	<-arriving
	var old []string
	seen := map[string]bool{}
	for i, e := range walked {
		require.False(t, seen[e.ID], "%s returned twice", e.ID)
		seen[e.ID] = true
		if i > 0 {
			prev := walked[i-1]
			require.True(t, prev.OccurredAt.After(e.OccurredAt) || (prev.OccurredAt.Equal(e.OccurredAt) && prev.Seq > e.Seq), "order at %d", i)
		}
		if !strings.HasPrefix(e.ID, "new") {
			old = append(old, e.ID)
		}
	}
	require.Len(t, old, n, "every event present when the walk began")
}

func TestAPIRejectsBadParameters(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	key := b.keys["acme"]
	for _, tc := range []struct {
		path   string
		params url.Values
		field  string
	}{
		{"/v1/activity", url.Values{"limit": {"0"}}, "limit"},
		{"/v1/activity", url.Values{"limit": {"201"}}, "limit"},
		{"/v1/activity", url.Values{"limit": {"ten"}}, "limit"},
		{"/v1/activity", url.Values{"cursor": {"!!"}}, "cursor"},
		{"/v1/activity", url.Values{"action": {"Closed"}}, "action"},
		{"/v1/activity", url.Values{"action": {"card.closed.x"}}, "action"},
		{"/v1/activity", url.Values{"creator": {"u7"}}, "creator"},
		{"/v1/activity", url.Values{"eventable_type": {"Card"}}, "eventable_type"},
		{"/v1/activity", url.Values{"since": {"yesterday"}}, "since"},
		{"/v1/activity", url.Values{"since": {"2026-01-02T00:00:00Z"}, "until": {"2026-01-01T00:00:00Z"}}, "until"},
		{"/v1/activity", url.Values{"sort": {"asc"}}, "sort"},
		{"/v1/activity", url.Values{"limit": {"1", "2"}}, "limit"},
		{"/v1/timelines/Card/c1", nil, "type"},
	} {
		r := b.get(t, key, tc.path, tc.params)
		require.Equal(t, http.StatusBadRequest, r.status, "%s %v", tc.path, tc.params)
		errs := r.problem["errors"].([]any)
		require.Equal(t, tc.field, errs[0].(map[string]any)["field"], "%s %v", tc.path, tc.params)
	}
	require.Equal(t, http.StatusForbidden, b.get(t, b.keys["acme-ingest-only"], "/v1/activity", nil).status)
	require.Equal(t, http.StatusUnauthorized, b.get(t, "el_nope", "/v1/activity", nil).status)
}

// TestReplayDeadLetters: a letter left by an older, buggy projector (its
// data is valid) is projected by replay and marked replayed; a letter that
// is still poison stays pending with its failure count raised.
func TestReplayDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	ctx := context.Background()
	good := ev("acme", "fixed", "card", "c1", "closed", events.Ref{Type: "board", ID: "b1"})
	require.NoError(t, good.Normalize(time.Now()))
	body, err := json.Marshal(good)
	require.NoError(t, err)
	require.NoError(t, deadletter.Add(ctx, b.pool, deadletter.Letter{Consumer: "projector", StreamSeq: 7, Subject: "events.acme.card.closed", Data: body, Error: "bug in v0.1"}))
	require.NoError(t, deadletter.Add(ctx, b.pool, deadletter.Letter{Consumer: "projector", StreamSeq: 9, Subject: "events.acme.card.closed", Data: []byte("junk"), Error: "decode"}))
	// A letter of today's stream body: the input form, no id; the replay
	// derives the id and recorded_at from the stream time kept with it.
	stamp := time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC)
	input := `{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}}`
	require.NoError(t, deadletter.Add(ctx, b.pool, deadletter.Letter{Consumer: "projector", StreamSeq: 11, Subject: "events.acme.card.closed", Data: []byte(input),
		StreamTime: stamp, MsgID: "", Error: "Postgres was down"}))

	dl := deadletter.NewStore(b.pool)
	letters, err := dl.List(ctx, deadletter.ListParams{Consumer: "projector"})
	require.NoError(t, err)
	require.Len(t, letters, 3)
	outcome := map[uint64]error{}
	for _, l := range letters {
		poison, err := ReplayDeadLetter(ctx, b.pool, l)
		require.NoError(t, err)
		outcome[l.StreamSeq] = poison
	}
	require.NoError(t, outcome[7])
	require.Error(t, outcome[9])
	require.NoError(t, outcome[11])
	derived, err := b.store.Get(ctx, "acme", events.StreamEventID(stamp, 11))
	require.NoError(t, err)
	require.Equal(t, stamp, derived.RecordedAt)

	e, err := b.store.Get(ctx, "acme", "fixed")
	require.NoError(t, err)
	require.Equal(t, uint64(7), e.Seq)
	pending, err := dl.List(ctx, deadletter.ListParams{Consumer: "projector"})
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Equal(t, uint64(9), pending[0].StreamSeq)
	require.Equal(t, 2, pending[0].Failures)
	_, entries := b.count(t)
	require.Equal(t, 3, entries, "fixed: card and board; the derived one: card")

	// Replaying again changes nothing for the projected one.
	l, err := dl.Get(ctx, "projector", 7)
	require.NoError(t, err)
	require.NotNil(t, l.ReplayedAt)
	poison, err := ReplayDeadLetter(ctx, b.pool, l)
	require.NoError(t, err)
	require.NoError(t, poison)
	n, _ := b.count(t)
	require.Equal(t, 2, n)
}
