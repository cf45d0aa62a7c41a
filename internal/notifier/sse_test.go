package notifier

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/browser"
	"github.com/eventline/eventline/internal/testenv"
)

// sseEvent is one Server-Sent Event as a client reads it.
type sseEvent struct {
	id, event string
	data      map[string]any
}

// openStream connects a real HTTP client to a user's stream and returns
// its events, plus comment lines (heartbeats) counted separately.
func (b *bundle) openStream(t *testing.T, key, user, lastEventID string) (<-chan sseEvent, *atomic.Int64) {
	t.Helper()
	items := b.openItems(t, key, user, lastEventID)
	out := make(chan sseEvent, 100)
	beats := &atomic.Int64{}
	go func() {
		defer close(out)
		for it := range items {
			if it.beat {
				beats.Add(1)
				continue
			}
			out <- it.sseEvent
		}
	}()
	return out, beats
}

func next(t *testing.T, c <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case e, ok := <-c:
		require.True(t, ok, "stream ended")
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no SSE event within 10s")
	}
	return sseEvent{}
}

// TestSSE: inbox changes written by either replica reach a subscriber of
// the other; reads are streamed too; Last-Event-ID catches up.
func TestSSE(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	b.watch(t, "acme", "card", "c1", "u1")
	stream, beats := b.openStream(t, "acme-read", "u1", "")
	other, _ := b.openStream(t, "acme-read", "u2", "")

	b.publish(t, ev("cm1", "comment", "created", "u9", "", card, board))
	e := next(t, stream)
	require.Equal(t, "notification", e.event)
	require.Equal(t, map[string]any{"type": "card", "id": "c1"}, e.data["group"])
	require.EqualValues(t, 1, e.data["unread_count"])
	require.Equal(t, "cm1", e.data["last_event_id"])
	require.Equal(t, "u1", e.data["user_id"])
	require.Nil(t, e.data["tenant"])
	require.NotEmpty(t, e.id)
	firstID := e.id

	b.publish(t, ev("cm2", "comment", "created", "u9", "", card, board))
	e = next(t, stream)
	require.EqualValues(t, 2, e.data["unread_count"])

	code, _ := b.call(t, "acme-read", "POST", "/v1/users/u1/notifications/"+e.data["id"].(string)+"/read", nil)
	require.Equal(t, http.StatusOK, code)
	e = next(t, stream)
	require.Equal(t, "read", e.event)
	code, _ = b.call(t, "acme-read", "POST", "/v1/users/u1/notifications/read-all", nil)
	require.Equal(t, http.StatusOK, code)
	// Nothing unread: read-all changes nothing and sends nothing.

	// u2 saw none of u1's changes; another tenant's stream for u1 neither.
	select {
	case e := <-other:
		t.Fatalf("u2 got %+v", e)
	default:
	}

	testenv.Poll(t, 5*time.Second, "heartbeats on an idle stream", func() bool { return beats.Load() >= 2 })

	// Catch-up: reconnecting with the first id replays what changed since.
	b.clock.Add(time.Minute)
	b.publish(t, ev("cm3", "comment", "created", "u9", "", card, board))
	next(t, stream)
	again, _ := b.openStream(t, "acme-read", "u1", firstID)
	e = next(t, again)
	require.Equal(t, "notification", e.event)
	require.EqualValues(t, 1, e.data["unread_count"])

	// A stream for tenant other and user u1 hears nothing of acme.
	foreign, _ := b.openStream(t, "other-admin", "u1", "")
	b.publish(t, ev("cm4", "comment", "created", "u9", "", card, board))
	next(t, stream)
	select {
	case e := <-foreign:
		t.Fatalf("tenant other got %+v", e)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestSSEAcrossReplicas: a change committed by one replica's consumer is
// streamed by another replica's hub.
func TestSSEAcrossReplicas(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	second := b.startService(t, Config{}, nil)
	mux := http.NewServeMux()
	second.Routes(mux)
	srv := newServer(t, mux)
	b.watch(t, "acme", "card", "c1", "u1")
	// Mark read through the first replica; stream from the second.
	b.publish(t, ev("cm1", "comment", "created", "u9", "", card, board))
	orig := b.api
	b.api = srv
	stream, _ := b.openStream(t, "acme-read", "u1", "")
	b.api = orig
	_, body := b.call(t, "acme-read", "GET", "/v1/users/u1/notifications", nil)
	id := body["notifications"].([]any)[0].(map[string]any)["id"].(string)
	code, _ := b.call(t, "acme-read", "POST", "/v1/users/u1/notifications/"+id+"/read", nil)
	require.Equal(t, http.StatusOK, code)
	// The stream may first carry cm1's own notification: its NOTIFY can
	// reach the second replica after the stream subscribed.
	e := next(t, stream)
	if e.event == "notification" {
		e = next(t, stream)
	}
	require.Equal(t, "read", e.event)
	require.Equal(t, id, e.data["id"])
}

// sseItem is one thing read from a stream: an event, or a comment line
// (a heartbeat).
type sseItem struct {
	sseEvent
	beat bool
}

// openItems connects to a user's stream and returns everything it reads,
// heartbeats included, in order.
func (b *bundle) openItems(t *testing.T, key, user, lastEventID string) <-chan sseItem {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	path := "/v1/users/" + user + "/notifications/stream"
	if browser.LooksLikeToken(key) { // a user token, sent as EventSource sends it
		path += "?token=" + url.QueryEscape(key)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", b.api+path, nil)
	require.NoError(t, err)
	if !browser.LooksLikeToken(key) {
		req.Header.Set("Authorization", "Bearer "+b.keys[key])
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	out := make(chan sseItem, 1024)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		var cur sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.event != "" {
					out <- sseItem{sseEvent: cur}
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, ":"):
				out <- sseItem{beat: true}
			case strings.HasPrefix(line, "id: "):
				cur.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				cur.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.data)
			}
		}
	}()
	return out
}

// sseState is what a client knows of one notification.
type sseState struct {
	Kind   string // notification (unread) or read
	Unread int
}

// sseChange is one notification's change as a stream shows it.
type sseChange struct {
	ID    string // the notification
	State sseState
}

// TestSSEResumesFromEveryID: during a burst of events applied in
// concurrent transactions and reads through the API, a stream's changes
// add up to the final inbox; a client reconnecting with any id it saw gets
// exactly the notifications changed after that id — each once, in its
// final state, in the order of their last changes — and nothing else. The
// ids of a stream only grow.
func TestSSEResumesFromEveryID(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	ctx := context.Background()
	cards := []string{"h0", "h1", "h2", "h3", "h4", "h5"}
	for _, c := range cards {
		b.watch(t, "acme", "card", c, "s1")
	}
	b.clock.Tick(time.Microsecond)
	live := b.openItems(t, "acme-read", "s1", "")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // reads through the API meanwhile
		defer wg.Done()
		for i := range 20 {
			path := "/v1/users/s1/notifications/read-all"
			var id int64
			if i%7 != 6 && b.pool.QueryRow(ctx, `SELECT id FROM notify.notifications WHERE tenant = 'acme' AND user_id = 's1' ORDER BY random() LIMIT 1`).Scan(&id) == nil {
				path = fmt.Sprintf("/v1/users/s1/notifications/%d/read", id)
			}
			if code, err := b.post("acme-read", path); err != nil || code != http.StatusOK {
				t.Errorf("POST %s: %d %v", path, code, err)
				return
			}
		}
	}()
	b.appendConcurrently(t, commentBurst(rng, 150, 6, cards), 2)
	wg.Wait()
	b.waitProcessed(t)

	// The final inbox, from the API.
	code, body := b.call(t, "acme-read", "GET", "/v1/users/s1/notifications?status=all&limit=200", nil)
	require.Equal(t, http.StatusOK, code)
	final := map[string]sseState{}
	for _, n := range body["notifications"].([]any) {
		m := n.(map[string]any)
		s := sseState{Kind: "notification", Unread: int(m["unread_count"].(float64))}
		if m["read_at"] != nil {
			s.Kind = "read"
		}
		final[m["id"].(string)] = s
	}
	require.NotEmpty(t, final)

	// The live stream, until its changes add up to the final inbox. A
	// read_all reads every notification unread then, in the order of
	// their last changes.
	type step struct {
		id      string      // the SSE id
		changes []sseChange // what it changed
		total   any         // unread_total
	}
	var steps []step
	known := map[string]sseState{}
	lastStep := map[string][2]int{} // notification -> (step, place in it) of its last change
	for !maps.Equal(known, final) {
		select {
		case it, ok := <-live:
			require.True(t, ok, "the live stream ended")
			if it.beat {
				continue
			}
			s := step{id: it.id, total: it.data["unread_total"]}
			if it.event == "read_all" {
				var unread []string
				for n, st := range known {
					if st.Kind == "notification" {
						unread = append(unread, n)
					}
				}
				sort.Slice(unread, func(i, j int) bool { return less(lastStep[unread[i]], lastStep[unread[j]]) })
				for _, n := range unread {
					s.changes = append(s.changes, sseChange{n, sseState{Kind: "read"}})
				}
			} else {
				s.changes = []sseChange{{it.data["id"].(string), sseState{Kind: it.event, Unread: int(it.data["unread_count"].(float64))}}}
			}
			for k, c := range s.changes {
				known[c.ID] = c.State
				lastStep[c.ID] = [2]int{len(steps), k}
			}
			steps = append(steps, s)
		case <-time.After(10 * time.Second):
			t.Fatalf("the live stream does not add up to the inbox: got %v, want %v", known, final)
		}
	}

	// Reconnecting from every id seen gets exactly the rest.
	caughtIDs := map[string][]string{}
	for p, from := range steps {
		if from.id == "" {
			continue
		}
		var after []string
		for n, at := range lastStep {
			if at[0] > p {
				after = append(after, n)
			}
		}
		sort.Slice(after, func(i, j int) bool { return less(lastStep[after[i]], lastStep[after[j]]) })
		var expect, caught []sseChange
		for _, n := range after {
			expect = append(expect, sseChange{n, final[n]})
		}
		var ids []string
		again := b.openItems(t, "acme-read", "s1", from.id)
	read:
		for {
			select {
			case it, ok := <-again:
				require.True(t, ok, "the stream ended")
				if it.beat {
					break read // the catch-up is written before the first heartbeat
				}
				caught = append(caught, sseChange{it.data["id"].(string), sseState{Kind: it.event, Unread: int(it.data["unread_count"].(float64))}})
				ids = append(ids, it.id)
			case <-time.After(10 * time.Second):
				t.Fatal("no heartbeat after the catch-up")
			}
		}
		require.Equal(t, expect, caught, "reconnected with Last-Event-ID %s (change %d of %d)", from.id, p+1, len(steps))
		caughtIDs[from.id] = ids
	}
	for from, ids := range caughtIDs {
		requireGrowing(t, append([]string{from}, ids...), "the catch-up's ids after %s", from)
	}

	// Every change has an id, and they grow; the last carries the unread
	// total.
	var ids []string
	for _, s := range steps {
		ids = append(ids, s.id)
	}
	requireGrowing(t, ids, "the live stream's ids")
	require.EqualValues(t, body["unread_total"], steps[len(steps)-1].total)
}

func less(a, b [2]int) bool { return a[0] < b[0] || a[0] == b[0] && a[1] < b[1] }

// requireGrowing checks that ids are inbox sequences, each above the one
// before.
func requireGrowing(t *testing.T, ids []string, what string, args ...any) {
	t.Helper()
	prev := int64(-1)
	msg := fmt.Sprintf(what, args...)
	for _, id := range ids {
		n, err := strconv.ParseInt(id, 10, 64)
		require.NoError(t, err, "%s: id %q", msg, id)
		require.Greater(t, n, prev, "%s: %v", msg, ids)
		prev = n
	}
}

// TestParseLastEventID: inbox sequences, and ids of the older form
// (resumed by time); anything else resumes nothing.
func TestParseLastEventID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]*resumePoint{
		"42":                   {seq: 42},
		" 7 ":                  {seq: 7},
		"0":                    {seq: 0},
		"1796411971682303-3":   {legacy: true, at: time.UnixMicro(1796411971682303).UTC(), id: 3},
		"":                     nil,
		"-1":                   nil,
		"x":                    nil,
		"1-x":                  nil,
		"99999999999999999999": nil,
	} {
		got, ok := parseLastEventID(in)
		if want == nil {
			require.False(t, ok, "%q", in)
			continue
		}
		require.True(t, ok, "%q", in)
		require.Equal(t, *want, got, "%q", in)
	}
}
