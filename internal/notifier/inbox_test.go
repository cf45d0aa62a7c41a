package notifier

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/pkg/events"
)

var (
	board = events.Ref{Type: "board", ID: "b1"}
	card  = events.Ref{Type: "card", ID: "c1"}
)

// TestRecipientMatrix follows a card through Fizzy's actions with the
// default rules and checks who gets a notification at each step.
func TestRecipientMatrix(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	b.watch(t, "acme", "board", "b1", "u1")
	b.watch(t, "acme", "board", "b1", "u2")

	steps := []struct {
		name  string
		event events.Event
		group events.Ref
		want  map[string]int // unread_count increments per user in group
	}{
		{"card published: board watchers and assignees, not the creator",
			ev("c1", "card", "published", "u1", `{"assignee_ids": ["u3"]}`, board), card,
			map[string]int{"u2": 1, "u3": 1}},
		{"card assigned: only the assignees",
			ev("c1", "card", "assigned", "u1", `{"assignee_ids": ["u4", "u1"]}`, board), card,
			map[string]int{"u4": 1}},
		{"card closed: the card's watchers (creator u1, assignees u3 u4), not the closer",
			ev("c1", "card", "closed", "u3", "", board), card,
			map[string]int{"u1": 1, "u4": 1}},
		{"comment created: card watchers and mentioned users, grouped under the card",
			ev("cm1", "comment", "created", "u4", `{"mentioned_user_ids": ["u5"]}`, card, board), card,
			map[string]int{"u1": 1, "u3": 1, "u5": 1}},
		{"mention: only the mentioned user",
			ev("c1", "card", "mentioned", "u2", `{"mentioned_user_ids": ["u6", "u2"]}`, board), card,
			map[string]int{"u6": 1}},
		{"an event no rule matches notifies nobody",
			ev("c1", "card", "moved", "u2", "", board), card,
			map[string]int{}},
	}
	for i, s := range steps {
		before := b.unread(t, "acme", s.group)
		s.event.ID = fmt.Sprintf("e%d", i)
		b.publish(t, s.event)
		after := b.unread(t, "acme", s.group)
		got := map[string]int{}
		for u, n := range after {
			if d := n - before[u]; d != 0 {
				got[u] = d
			}
		}
		require.Equal(t, s.want, got, s.name)
	}

	// A system creator notifies nobody, even with a matching rule.
	before := b.unread(t, "acme", card)
	sys := ev("sys1", "card", "closed", "", "", board)
	sys.Creator = events.Ref{Type: events.SystemCreator, ID: "autoclose"}
	b.publish(t, sys)
	require.Equal(t, before, b.unread(t, "acme", card), "system creator")

	// Watches started by the rules.
	code, body := b.call(t, "acme-read", "GET", "/v1/users/u5/watches", nil)
	require.Equal(t, http.StatusOK, code)
	ws := body["watches"].([]any)
	require.Len(t, ws, 1)
	require.Equal(t, map[string]any{"type": "card", "id": "c1"}, ws[0].(map[string]any)["object"])
}

// TestAggregationReadAndRedelivery: one notification per user and group;
// events bump it, read clears it, and a redelivered event counts once.
func TestAggregationReadAndRedelivery(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	b.watch(t, "acme", "card", "c1", "u1")
	for i := range 3 {
		b.publish(t, ev(fmt.Sprintf("cm%d", i), "comment", "created", "u9", "", card, board))
	}
	code, body := b.call(t, "acme-read", "GET", "/v1/users/u1/notifications", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	ns := body["notifications"].([]any)
	require.Len(t, ns, 1, "aggregated under the card")
	n := ns[0].(map[string]any)
	require.Equal(t, map[string]any{"type": "card", "id": "c1"}, n["group"])
	require.EqualValues(t, 3, n["unread_count"])
	require.Equal(t, "cm2", n["last_event"].(map[string]any)["id"])
	require.Equal(t, "comment.created", n["last_event"].(map[string]any)["type"])
	require.Nil(t, n["read_at"])
	require.EqualValues(t, 1, body["unread_total"])

	// Redelivery: the same stored event appended again as a new stream
	// message (another Nats-Msg-Id, so the stream keeps it) must not count.
	ctx := context.Background()
	str, err := b.js.Stream(ctx, events.StreamName)
	require.NoError(t, err)
	stored, err := str.GetMsg(ctx, 1)
	require.NoError(t, err)
	for i := range 2 {
		msg := nats.NewMsg(stored.Subject)
		msg.Data = stored.Data
		msg.Header.Set(nats.MsgIdHdr, fmt.Sprintf("redelivery-%d", i))
		_, err = b.js.PublishMsg(ctx, msg)
		require.NoError(t, err)
	}
	b.waitProcessed(t)
	require.Equal(t, map[string]int{"u1": 3}, b.unread(t, "acme", card), "redelivered events counted once")

	// Read: unread_count 0, read_at set; a new event clears read_at.
	id := n["id"].(string)
	code, body = b.call(t, "acme-read", "POST", "/v1/users/u1/notifications/"+id+"/read", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.NotNil(t, body["read_at"])
	require.EqualValues(t, 0, body["unread_count"])
	code, body = b.call(t, "acme-read", "GET", "/v1/users/u1/notifications?status=unread", nil)
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, body["notifications"])
	require.EqualValues(t, 0, body["unread_total"])
	code, body = b.call(t, "acme-read", "GET", "/v1/users/u1/notifications?status=all", nil)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["notifications"], 1)

	b.clock.Add(time.Minute)
	b.publish(t, ev("cm9", "comment", "created", "u9", "", card, board))
	code, body = b.call(t, "acme-read", "GET", "/v1/users/u1/notifications?status=unread", nil)
	require.Equal(t, http.StatusOK, code)
	n = body["notifications"].([]any)[0].(map[string]any)
	require.EqualValues(t, 1, n["unread_count"])
	require.Nil(t, n["read_at"])
	require.Equal(t, id, n["id"], "the same notification")

	// read-all
	code, body = b.call(t, "acme-read", "POST", "/v1/users/u1/notifications/read-all", nil)
	require.Equal(t, http.StatusOK, code)
	require.EqualValues(t, 1, body["marked_read"])
	code, _ = b.call(t, "acme-read", "POST", "/v1/users/u1/notifications/999999/read", nil)
	require.Equal(t, http.StatusNotFound, code)
}

// TestInboxPagination: newest first by updated_at, opaque cursors bound to
// tenant and user, limit bounds.
func TestInboxPagination(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	var es []events.Event
	for i := range 7 {
		es = append(es, ev(fmt.Sprintf("c%d", i), "card", "assigned", "u9", `{"assignee_ids": ["u1"]}`))
	}
	for _, e := range es {
		b.clock.Add(time.Second)
		b.publish(t, e)
	}
	var got []string
	cursor := ""
	for page := 0; ; page++ {
		q := "?limit=3"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		code, body := b.call(t, "acme-read", "GET", "/v1/users/u1/notifications"+q, nil)
		require.Equal(t, http.StatusOK, code, "%v", body)
		for _, n := range body["notifications"].([]any) {
			got = append(got, n.(map[string]any)["group"].(map[string]any)["id"].(string))
		}
		if body["next_cursor"] == nil {
			break
		}
		cursor = body["next_cursor"].(string)
		require.Less(t, page, 5)
	}
	require.Equal(t, []string{"c6", "c5", "c4", "c3", "c2", "c1", "c0"}, got)

	// A cursor works only for the user and tenant it was issued to.
	_, body := b.call(t, "acme-read", "GET", "/v1/users/u1/notifications?limit=1", nil)
	c := body["next_cursor"].(string)
	code, body := b.call(t, "acme-read", "GET", "/v1/users/u2/notifications?cursor="+url.QueryEscape(c), nil)
	require.Equal(t, http.StatusBadRequest, code, "%v", body)
	code, _ = b.call(t, "other-admin", "GET", "/v1/users/u1/notifications?cursor="+url.QueryEscape(c), nil)
	require.Equal(t, http.StatusBadRequest, code)
	code, body = b.call(t, "acme-read", "GET", "/v1/users/u1/notifications?limit=0&status=new&x=1", nil)
	require.Equal(t, http.StatusBadRequest, code)
	require.ElementsMatch(t, []string{"limit", "status", "x"}, fields(body))
}

func fields(problem map[string]any) []string {
	var out []string
	errs, _ := problem["errors"].([]any)
	for _, e := range errs {
		out = append(out, e.(map[string]any)["field"].(string))
	}
	return out
}

// TestTenantIsolation: another tenant's key sees and changes nothing of
// acme's inbox, watches, preferences or rules.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	b.watch(t, "acme", "card", "c1", "u1")
	b.setPrefs(t, "u1", "u1@example.com", "daily", "Europe/Paris")
	b.publish(t, ev("cm1", "comment", "created", "u9", "", card, board))
	_, body := b.call(t, "acme-read", "GET", "/v1/users/u1/notifications", nil)
	id := body["notifications"].([]any)[0].(map[string]any)["id"].(string)

	code, body := b.call(t, "other-admin", "GET", "/v1/users/u1/notifications", nil)
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, body["notifications"])
	require.EqualValues(t, 0, body["unread_total"])
	code, _ = b.call(t, "other-admin", "POST", "/v1/users/u1/notifications/"+id+"/read", nil)
	require.Equal(t, http.StatusNotFound, code)
	code, body = b.call(t, "other-admin", "POST", "/v1/users/u1/notifications/read-all", nil)
	require.Equal(t, http.StatusOK, code)
	require.EqualValues(t, 0, body["marked_read"])
	code, body = b.call(t, "other-admin", "GET", "/v1/users/u1/watches", nil)
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, body["watches"])
	code, body = b.call(t, "other-admin", "GET", "/v1/users/u1/preferences", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "", body["email"])
	code, _ = b.call(t, "other-admin", "DELETE", "/v1/watches/card/c1/users/u1", nil)
	require.Equal(t, http.StatusNoContent, code)
	code, _ = b.call(t, "other-admin", "PUT", "/v1/notification-rules", map[string]any{"rules": []any{}})
	require.Equal(t, http.StatusOK, code)

	// acme is untouched: still watching, unread, its rules the defaults.
	require.Equal(t, map[string]int{"u1": 1}, b.unread(t, "acme", card))
	code, body = b.call(t, "acme-read", "GET", "/v1/users/u1/watches", nil)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["watches"], 1)
	code, body = b.call(t, "acme-read", "GET", "/v1/notification-rules", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, true, body["is_default"])
	// An event of tenant other does not reach acme's watchers.
	o := ev("cm2", "comment", "created", "u9", "", card, board)
	o.Tenant = "other"
	b.publish(t, o)
	require.Equal(t, map[string]int{"u1": 1}, b.unread(t, "acme", card))
}

// TestScopes: reads need read, watches and preferences ingest, rules admin.
func TestScopes(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	for _, c := range []struct {
		key, method, path string
		want              int
	}{
		{"acme-read", "PUT", "/v1/notification-rules", http.StatusForbidden},
		{"acme-ingest", "GET", "/v1/users/u1/notifications", http.StatusForbidden},
		{"acme-read", "PUT", "/v1/watches/card/c1/users/u1", http.StatusForbidden},
		{"acme-ingest", "PUT", "/v1/watches/card/c1/users/u1", http.StatusOK},
		{"acme-read", "GET", "/v1/users/u1/watches", http.StatusOK},
		{"nobody", "GET", "/v1/users/u1/watches", http.StatusUnauthorized},
		{"acme-ingest", "PUT", "/v1/watches/Card/c1/users/u1", http.StatusUnprocessableEntity}, // as every write API refuses input it would store
	} {
		code, body := b.call(t, c.key, c.method, c.path, nil)
		require.Equal(t, c.want, code, "%s %s with %s: %v", c.method, c.path, c.key, body)
	}
}

// TestRulesAPI: validation names each problem; custom rules replace the
// defaults for new events; DELETE restores them.
func TestRulesAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	code, body := b.call(t, "acme-read", "GET", "/v1/notification-rules", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, true, body["is_default"])
	require.Len(t, body["rules"], len(DefaultRules().Rules))

	bad := `{"rules": [
		{"event": "card", "notify": {"watchers_of": ["board"]}},
		{"event": "card.closed", "group": "Card", "notify": {"creator": true, "watchers_of": ["card", "card"], "user_ids_in": ["a-b"]}},
		{"event": "*.*"}
	]}`
	code, body = b.call(t, "acme-admin", "PUT", "/v1/notification-rules", []byte(bad))
	require.Equal(t, http.StatusUnprocessableEntity, code, "%v", body)
	type fe struct {
		Index int
		Field string
	}
	var got []fe
	for _, e := range body["errors"].([]any) {
		m := e.(map[string]any)
		require.NotEmpty(t, m["message"])
		got = append(got, fe{int(m["index"].(float64)), m["field"].(string)})
	}
	require.ElementsMatch(t, []fe{{0, "event"}, {1, "group"}, {1, "notify.creator"}, {1, "notify.watchers_of[1]"}, {1, "notify.user_ids_in[0]"}, {2, "notify"}}, got)

	code, body = b.call(t, "acme-admin", "PUT", "/v1/notification-rules", []byte(`{"rules": [{"event": "card.closed", "notify": {"watchers_off": []}}]}`))
	require.Equal(t, http.StatusUnprocessableEntity, code)
	require.Contains(t, body["errors"].([]any)[0].(map[string]any)["message"], "watchers_off")

	// Custom: every card event notifies the board's watchers.
	custom := map[string]any{"rules": []any{map[string]any{"event": "card.*", "notify": map[string]any{"watchers_of": []string{"board"}}}}}
	code, body = b.call(t, "acme-admin", "PUT", "/v1/notification-rules", custom)
	require.Equal(t, http.StatusOK, code, "%v", body)
	b.watch(t, "acme", "board", "b1", "u7")
	b.publish(t, ev("c1", "card", "moved", "u1", "", board))
	require.Equal(t, map[string]int{"u7": 1}, b.unread(t, "acme", card))

	code, body = b.call(t, "acme-admin", "DELETE", "/v1/notification-rules", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, true, body["is_default"])
	b.publish(t, ev("c1b", "card", "moved", "u1", "", board))
	require.Equal(t, map[string]int{"u7": 1}, b.unread(t, "acme", card), "defaults have no rule for card.moved")
}

// TestPreferencesAPI validates and stores preferences.
func TestPreferencesAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	code, body := b.call(t, "acme-read", "GET", "/v1/users/u1/preferences", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, map[string]any{"email": "", "digest": "every_few_hours", "timezone": "UTC"}, body)
	code, body = b.call(t, "acme-ingest", "PUT", "/v1/users/u1/preferences", map[string]any{"email": "not an address", "digest": "hourly", "timezone": "Mars/Olympus"})
	require.Equal(t, http.StatusUnprocessableEntity, code)
	require.ElementsMatch(t, []string{"email", "digest", "timezone"}, fields(body))
	code, body = b.call(t, "acme-ingest", "PUT", "/v1/users/u1/preferences", map[string]any{"email": "ana@example.com", "digest": "weekly", "timezone": "America/New_York"})
	require.Equal(t, http.StatusOK, code, "%v", body)
	code, body = b.call(t, "acme-read", "GET", "/v1/users/u1/preferences", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, map[string]any{"email": "ana@example.com", "digest": "weekly", "timezone": "America/New_York"}, body)
	code, _ = b.call(t, "acme-ingest", "PUT", "/v1/users/u1/preferences", []byte(`{"email": "a@b.c", "extra": 1}`))
	require.Equal(t, http.StatusUnprocessableEntity, code)
}

// TestApplyDirectRedelivery calls the writer twice with the same events:
// the second call changes nothing.
func TestApplyDirectRedelivery(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	b.watch(t, "acme", "card", "c1", "u1")
	w := &writer{pool: b.pool, now: b.clock.Now}
	e := ev("x1", "comment", "created", "u2", "", card)
	require.NoError(t, e.Normalize(time.Now()))
	e.Seq = 99
	ctx := context.Background()
	r1, err := w.apply(ctx, []*events.Event{&e, &e})
	require.NoError(t, err)
	require.Equal(t, applyResult{applied: 1, duplicates: 1, notifications: 1}, r1)
	r2, err := w.apply(ctx, []*events.Event{&e})
	require.NoError(t, err)
	require.Equal(t, applyResult{duplicates: 1}, r2)
	require.Equal(t, map[string]int{"u1": 1}, b.unread(t, "acme", card))
	raw, _ := json.Marshal(e)
	require.NotEmpty(t, raw)
}

// TestPoisonMessageDeadLettered: a stream message that is not a valid
// event is kept in the dead-letter table with the reason and acked, and
// the events behind it are processed.
func TestPoisonMessageDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	b.watch(t, "acme", "card", "c1", "u1")
	ctx := context.Background()
	msg := nats.NewMsg("events.acme.card.closed")
	msg.Data = []byte(`{"not": "an event"`)
	msg.Header.Set(nats.MsgIdHdr, "acme:poison")
	_, err := b.js.PublishMsg(ctx, msg)
	require.NoError(t, err)
	b.publish(t, ev("cm1", "comment", "created", "u9", "", card))
	require.Equal(t, map[string]int{"u1": 1}, b.unread(t, "acme", card))
	var consumer, reason string
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT consumer, error FROM eventline.dead_letters WHERE stream_seq = 1`).Scan(&consumer, &reason))
	require.Equal(t, DefaultConsumer, consumer)
	require.NotEmpty(t, reason)
	// It failed validation: the tenant sees it as a rejection.
	rs, err := deadletter.ListRejections(ctx, b.pool, deadletter.RejectionQuery{Tenant: "acme", Limit: 10})
	require.NoError(t, err)
	require.Len(t, rs, 1)
	require.Equal(t, uint64(1), rs[0].Seq)
	require.Equal(t, "event", rs[0].Errors[0].Field, "not a JSON object")
}

// TestReplayDeadLetter: `eventline dlq replay --consumer notifier` applies
// a dead-lettered event once; a poison one stays a letter.
func TestReplayDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	b.watch(t, "acme", "card", "c1", "u1")
	ctx := context.Background()
	e := ev("cm1", "comment", "created", "u9", "", card)
	require.NoError(t, e.Normalize(time.Now()))
	data, err := json.Marshal(e)
	require.NoError(t, err)
	l := deadletter.Letter{Consumer: DefaultConsumer, StreamSeq: 42, Subject: "events.acme.comment.created", Data: data, Error: "database down"}
	require.NoError(t, deadletter.Add(ctx, b.pool, l))
	for range 2 {
		poison, err := ReplayDeadLetter(ctx, b.pool, l)
		require.NoError(t, err)
		require.NoError(t, poison)
	}
	require.Equal(t, map[string]int{"u1": 1}, b.unread(t, "acme", card))
	got, err := deadletter.NewStore(b.pool).Get(ctx, DefaultConsumer, 42)
	require.NoError(t, err)
	require.NotNil(t, got.ReplayedAt)

	bad := deadletter.Letter{Consumer: DefaultConsumer, StreamSeq: 43, Subject: "events.acme.card.closed", Data: []byte("{"), Error: "x"}
	require.NoError(t, deadletter.Add(ctx, b.pool, bad))
	poison, err := ReplayDeadLetter(ctx, b.pool, bad)
	require.NoError(t, err)
	require.Error(t, poison)
}

// TestPruneProcessedKeepsTheRetention: de-duplication keys older than the
// retention go, younger ones stay (a redelivery still changes nothing).
func TestPruneProcessedKeepsTheRetention(t *testing.T) {
	t.Parallel()
	b := setup(t, options{cfg: Config{DedupRetention: 24 * time.Hour}})
	ctx := context.Background()
	now := b.clock.Now()
	_, err := b.pool.Exec(ctx, `INSERT INTO notify.processed (tenant, event_id, processed_at)
		SELECT 'acme', 'old-' || i, $1::timestamptz - interval '1 minute' * i FROM generate_series(1, 12000) i`, now.Add(-25*time.Hour))
	require.NoError(t, err)
	_, err = b.pool.Exec(ctx, `INSERT INTO notify.processed (tenant, event_id, processed_at) VALUES ('acme', 'young', $1)`, now.Add(-23*time.Hour))
	require.NoError(t, err)
	n, err := b.svc.PruneProcessed(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 12000, n, "every key older than a day, over several batches")
	rows, err := b.pool.Query(ctx, `SELECT event_id FROM notify.processed WHERE tenant = 'acme' AND event_id IN ('young', 'old-1')`)
	require.NoError(t, err)
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"young"}, left)
}
