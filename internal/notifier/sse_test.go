package notifier

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", b.api+"/v1/users/"+user+"/notifications/stream", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+b.keys[key])
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	out := make(chan sseEvent, 100)
	beats := &atomic.Int64{}
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
					out <- cur
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, ":"):
				beats.Add(1)
			case strings.HasPrefix(line, "id: "):
				cur.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				cur.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.data)
			}
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
