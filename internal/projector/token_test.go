package projector

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/browser"
	"github.com/eventline/eventline/pkg/events"
)

const tokenSecret = "test-user-token-secret-0123456789"

// TestTimelineUserToken: a user token reads exactly the timelines it
// lists, of its own tenant, by bearer header or query parameter; it opens
// no other read API; expired and forged tokens are 401; CORS headers go to
// the tenant's listed origins only.
func TestTimelineUserToken(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	b.worker(t, Config{}, nil)
	b1, b2 := events.Ref{Type: "board", ID: "b1"}, events.Ref{Type: "board", ID: "b2"}
	_, err := b.pub.AppendBatch(context.Background(), []events.Event{
		ev("acme", "e1", "card", "c1", "published", b1), ev("acme", "e2", "card", "c2", "published", b2),
		ev("globex", "e3", "card", "c3", "published", b1),
	})
	require.NoError(t, err)
	b.waitEvents(t, 3)

	signer, err := browser.NewSigner(tokenSecret)
	require.NoError(t, err)
	mint := func(tenant string, exp time.Duration, scopes ...string) string {
		tok, err := signer.Mint(browser.Claims{Tenant: tenant, User: "u1", Scopes: scopes, Timelines: []events.Ref{b1}, Expires: time.Now().Add(exp).Unix()})
		require.NoError(t, err)
		return tok
	}
	acme := mint("acme", time.Hour, browser.ScopeInbox, browser.ScopeTimeline)

	r := b.get(t, acme, "/v1/timelines/board/b1", nil)
	require.Equal(t, http.StatusOK, r.status, "%v", r.problem)
	require.Equal(t, []string{"e1"}, ids(r.page.Events), "its own tenant's b1 only")
	r = b.get(t, "", "/v1/timelines/board/b1", url.Values{"token": {acme}, "limit": {"1"}})
	require.Equal(t, http.StatusOK, r.status, "%v", r.problem)
	require.Equal(t, []string{"e1"}, ids(r.page.Events))
	var withSentences struct {
		Events    []events.Event               `json:"events"`
		Sentences map[string]map[string]string `json:"sentences"`
	}
	code, problem := b.getJSON(t, acme, "/v1/timelines/board/b1", url.Values{"sentences": {"true"}}, &withSentences)
	require.Equal(t, http.StatusOK, code, "%v", problem)
	require.Equal(t, map[string]string{"text": "u7 published card c1", "html": "u7 published card <em>c1</em>"}, withSentences.Sentences["e1"])
	code, problem = b.getJSON(t, acme, "/v1/timelines/board/b1", url.Values{"sentences": {"yes"}}, &withSentences)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, "sentences", problem["errors"].([]any)[0].(map[string]any)["field"])
	r = b.get(t, mint("globex", time.Hour, browser.ScopeTimeline), "/v1/timelines/board/b1", nil)
	require.Equal(t, []string{"e3"}, ids(r.page.Events), "a globex token reads globex's b1")

	for name, c := range map[string]struct {
		token, path string
		want        int
	}{
		"unlisted timeline":  {acme, "/v1/timelines/board/b2", http.StatusForbidden},
		"no timeline scope":  {mint("acme", time.Hour, browser.ScopeInbox), "/v1/timelines/board/b1", http.StatusForbidden},
		"the whole activity": {acme, "/v1/activity", http.StatusUnauthorized},
		"one event":          {acme, "/v1/events/e1", http.StatusUnauthorized},
		"expired":            {mint("acme", -time.Second, browser.ScopeTimeline), "/v1/timelines/board/b1", http.StatusUnauthorized},
		"tampered":           {acme + "x", "/v1/timelines/board/b1", http.StatusUnauthorized},
	} {
		r := b.get(t, c.token, c.path, nil)
		require.Equal(t, c.want, r.status, "%s: %v", name, r.problem)
	}

	_, err = b.pool.Exec(context.Background(), `INSERT INTO eventline.browser_origins (tenant, origin) VALUES ('acme', 'http://localhost:3000')`)
	require.NoError(t, err)
	for origin, allow := range map[string]string{"http://localhost:3000": "http://localhost:3000", "http://localhost:3001": ""} {
		req, err := http.NewRequest(http.MethodGet, b.api+"/v1/timelines/board/b1?token="+url.QueryEscape(acme), nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, allow, resp.Header.Get("Access-Control-Allow-Origin"), origin)
	}
}
