package notifier

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/browser"
	"github.com/eventline/eventline/internal/testenv"
)

const tokenSecret = "test-user-token-secret-0123456789"

// mint asks POST /v1/user-tokens with the named key for a token of user.
func (b *bundle) mint(t *testing.T, key, user string) string {
	t.Helper()
	code, body := b.call(t, key, "POST", "/v1/user-tokens", map[string]any{"user_id": user})
	require.Equal(t, http.StatusCreated, code, "%v", body)
	return body["token"].(string)
}

// TestUserTokens: a token minted with a read key for (acme, u1) reads u1's
// inbox, marks it read and opens u1's stream, by query parameter or
// bearer header; it reads no other user's inbox, reaches no other path,
// and a token of another tenant for the same user id sees nothing of
// acme's. Expired, tampered and foreign tokens are 401 problems.
func TestUserTokens(t *testing.T) {
	t.Parallel()
	b := setup(t, options{cfg: Config{UserTokenSecret: tokenSecret}})
	b.watch(t, "acme", "card", "c1", "u1")
	b.watch(t, "acme", "card", "c1", "u2")
	b.publish(t, ev("cm1", "comment", "created", "u9", "", card, board))

	u1 := b.mint(t, "acme-read", "u1")
	code, _, body := b.request(t, "GET", "/v1/users/u1/notifications?status=unread&token="+url.QueryEscape(u1), nil, nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Len(t, body["notifications"], 1)
	require.EqualValues(t, 1, body["unread_total"])
	code, _, body = b.request(t, "GET", "/v1/users/u1/notifications", map[string]string{"Authorization": "Bearer " + u1}, nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	id := body["notifications"].([]any)[0].(map[string]any)["id"].(string)

	// Another user: refused, whichever way the token comes.
	for _, h := range []map[string]string{nil, {"Authorization": "Bearer " + u1}} {
		path := "/v1/users/u2/notifications"
		if h == nil {
			path += "?token=" + url.QueryEscape(u1)
		}
		code, hdr, body := b.request(t, "GET", path, h, nil)
		require.Equal(t, http.StatusForbidden, code, "%v", body)
		require.Equal(t, "application/problem+json", hdr.Get("Content-Type"))
		require.Contains(t, body["detail"], "another user")
	}
	code, _, _ = b.request(t, "POST", "/v1/users/u2/notifications/read-all?token="+url.QueryEscape(u1), nil, nil)
	require.Equal(t, http.StatusForbidden, code)
	require.Equal(t, map[string]int{"u1": 1, "u2": 1}, b.unread(t, "acme", card))

	// Scope: the token is no API key.
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/users/u1/watches"}, {"GET", "/v1/users/u1/preferences"}, {"GET", "/v1/notification-rules"},
		{"PUT", "/v1/watches/card/c9/users/u1"}, {"POST", "/v1/user-tokens"}, {"GET", "/v1/browser-origins"},
	} {
		code, _, body := b.request(t, c.method, c.path, map[string]string{"Authorization": "Bearer " + u1}, nil)
		require.Equal(t, http.StatusUnauthorized, code, "%s %s: %v", c.method, c.path, body)
	}

	// Live: the stream by query token carries unread_total; mark read by token.
	live, _ := b.openStream(t, u1, "u1", "")
	b.publish(t, ev("cm2", "comment", "created", "u9", "", card, board))
	e := next(t, live)
	require.Equal(t, "notification", e.event)
	require.EqualValues(t, 2, e.data["unread_count"])
	require.EqualValues(t, 1, e.data["unread_total"])
	code, _, body = b.request(t, "POST", "/v1/users/u1/notifications/"+id+"/read?token="+url.QueryEscape(u1), nil, nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	e = next(t, live)
	require.Equal(t, "read", e.event)
	require.EqualValues(t, 0, e.data["unread_total"])
	require.Equal(t, map[string]int{"u1": 0, "u2": 2}, b.unread(t, "acme", card))

	// Cross-tenant: tenant other's token for the same user id sees none of acme's u1.
	foreign := b.mint(t, "other-admin", "u1")
	code, _, body = b.request(t, "GET", "/v1/users/u1/notifications?token="+url.QueryEscape(foreign), nil, nil)
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, body["notifications"])
	code, _, body = b.request(t, "POST", "/v1/users/u1/notifications/"+id+"/read?token="+url.QueryEscape(foreign), nil, nil)
	require.Equal(t, http.StatusNotFound, code, "%v", body)

	// Expired, tampered, signed with another secret: 401 problem+json.
	signer, err := browser.NewSigner(tokenSecret)
	require.NoError(t, err)
	expired, err := signer.Mint(browser.Claims{Tenant: "acme", User: "u1", Scopes: []string{browser.ScopeInbox}, Expires: time.Now().Add(-time.Second).Unix()})
	require.NoError(t, err)
	stranger, err := browser.NewSigner("not-the-server-secret-0123456789")
	require.NoError(t, err)
	strange, err := stranger.Mint(browser.Claims{Tenant: "acme", User: "u1", Scopes: []string{browser.ScopeInbox}, Expires: time.Now().Add(time.Hour).Unix()})
	require.NoError(t, err)
	payload, sig, _ := strings.Cut(u1, ".")
	u2 := b.mint(t, "acme-read", "u2")
	u2payload, _, _ := strings.Cut(u2, ".")
	for name, tok := range map[string]string{"expired": expired, "other secret": strange, "payload of u2": u2payload + "." + sig, "truncated": payload, "empty": ""} {
		for _, path := range []string{"/v1/users/u1/notifications", "/v1/users/u1/notifications/stream", "/v1/users/u2/notifications"} {
			code, hdr, body := b.request(t, "GET", path+"?token="+url.QueryEscape(tok), nil, nil)
			require.Equal(t, http.StatusUnauthorized, code, "%s %s: %v", name, path, body)
			require.Equal(t, "application/problem+json", hdr.Get("Content-Type"))
		}
	}
	_, _, body = b.request(t, "GET", "/v1/users/u1/notifications?token="+url.QueryEscape(expired), nil, nil)
	require.Contains(t, body["detail"], "expired")

	// Minting needs a read key and a valid body.
	code, _ = b.call(t, "acme-ingest", "POST", "/v1/user-tokens", map[string]any{"user_id": "u1"})
	require.Equal(t, http.StatusForbidden, code)
	code, body = b.call(t, "acme-read", "POST", "/v1/user-tokens", map[string]any{"user_id": "", "ttl_seconds": 1})
	require.Equal(t, http.StatusUnprocessableEntity, code)
	require.ElementsMatch(t, []string{"user_id", "ttl_seconds"}, fields(body))
}

// TestUserTokenStreamEndsAtExpiry: a stream opened with a token closes
// when the token expires, and reopening it with that token is 401.
func TestUserTokenStreamEndsAtExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t, options{cfg: Config{UserTokenSecret: tokenSecret, Heartbeat: time.Hour}})
	signer, err := browser.NewSigner(tokenSecret)
	require.NoError(t, err)
	tok, err := signer.Mint(browser.Claims{Tenant: "acme", User: "u1", Scopes: []string{browser.ScopeInbox}, Expires: time.Now().Add(2 * time.Second).Unix()})
	require.NoError(t, err)
	items := b.openItems(t, tok, "u1", "")
	select {
	case _, open := <-items:
		require.False(t, open, "nothing is sent on an idle stream before the token expires")
	case <-time.After(10 * time.Second):
		t.Fatal("the stream outlived its token by far")
	}
	testenv.Poll(t, 5*time.Second, "the token to expire", func() bool {
		code, _, _ := b.request(t, "GET", "/v1/users/u1/notifications/stream?token="+url.QueryEscape(tok), nil, nil)
		return code == http.StatusUnauthorized
	})
}

// TestUserTokensDisabled: without USER_TOKEN_SECRET minting is 503 and a
// token is 401, both saying which setting enables them.
func TestUserTokensDisabled(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	code, body := b.call(t, "acme-read", "POST", "/v1/user-tokens", map[string]any{"user_id": "u1"})
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body["detail"], "USER_TOKEN_SECRET")
	signer, err := browser.NewSigner(tokenSecret)
	require.NoError(t, err)
	tok, err := signer.Mint(browser.Claims{Tenant: "acme", User: "u1", Scopes: []string{browser.ScopeInbox}, Expires: time.Now().Add(time.Hour).Unix()})
	require.NoError(t, err)
	code, _, body = b.request(t, "GET", "/v1/users/u1/notifications?token="+url.QueryEscape(tok), nil, nil)
	require.Equal(t, http.StatusUnauthorized, code)
	require.Contains(t, body["detail"], "USER_TOKEN_SECRET")
}

// TestBrowserOrigins: CORS headers go only to a token's requests from an
// origin its tenant listed; preflights follow the same rule; API-key
// requests never get them; the list is admin-only and validated.
func TestBrowserOrigins(t *testing.T) {
	t.Parallel()
	b := setup(t, options{cfg: Config{UserTokenSecret: tokenSecret}})
	const app, evil = "https://app.example.com", "https://evil.example.com"
	code, _ := b.call(t, "acme-read", "PUT", "/v1/browser-origins", map[string]any{"origins": []string{app}})
	require.Equal(t, http.StatusForbidden, code)
	code, body := b.call(t, "acme-admin", "PUT", "/v1/browser-origins", map[string]any{"origins": []string{"https://App.example.com/", "*", "https://x.com/path"}})
	require.Equal(t, http.StatusUnprocessableEntity, code)
	require.Equal(t, []string{"origins[1]", "origins[2]"}, fields(body))
	code, body = b.call(t, "acme-admin", "PUT", "/v1/browser-origins", map[string]any{"origins": []string{"https://App.example.com/", app}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, []any{app}, body["origins"])
	_, body = b.call(t, "acme-read", "GET", "/v1/browser-origins", nil)
	require.Equal(t, []any{app}, body["origins"])
	_, body = b.call(t, "other-admin", "GET", "/v1/browser-origins", nil)
	require.Equal(t, []any{}, body["origins"], "origins are per tenant")

	acme := url.QueryEscape(b.mint(t, "acme-read", "u1"))
	other := url.QueryEscape(b.mint(t, "other-admin", "u1"))
	path := "/v1/users/u1/notifications"
	for _, c := range []struct {
		name, method, path string
		header             map[string]string
		code               int
		allow              string
	}{
		{"token from the listed origin", "GET", path + "?token=" + acme, map[string]string{"Origin": app}, 200, app},
		{"token from another origin", "GET", path + "?token=" + acme, map[string]string{"Origin": evil}, 200, ""},
		{"token of a tenant that lists no origin", "GET", path + "?token=" + other, map[string]string{"Origin": app}, 200, ""},
		{"api key from the listed origin", "GET", path, map[string]string{"Origin": app, "Authorization": "Bearer " + b.keys["acme-read"]}, 200, ""},
		{"refused token from a listed origin: readable", "GET", path + "?token=x" + acme, map[string]string{"Origin": app}, 401, app},
		{"refused token from another origin", "GET", path + "?token=x" + acme, map[string]string{"Origin": evil}, 401, ""},
		{"another user's inbox: readable refusal", "GET", "/v1/users/u2/notifications?token=" + acme, map[string]string{"Origin": app}, 403, app},
		{"preflight with token, listed", "OPTIONS", path + "?token=" + acme, map[string]string{"Origin": app, "Access-Control-Request-Method": "GET"}, 204, app},
		{"preflight with token, other origin", "OPTIONS", path + "?token=" + acme, map[string]string{"Origin": evil, "Access-Control-Request-Method": "GET"}, 403, ""},
		{"preflight with other tenant's token", "OPTIONS", path + "?token=" + other, map[string]string{"Origin": app, "Access-Control-Request-Method": "GET"}, 403, ""},
		{"preflight for a bearer header, listed somewhere", "OPTIONS", path, map[string]string{"Origin": app, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}, 204, app},
		{"preflight for a bearer header, unknown origin", "OPTIONS", path, map[string]string{"Origin": evil, "Access-Control-Request-Method": "GET"}, 403, ""},
		{"not a preflight", "OPTIONS", path, nil, 403, ""},
	} {
		code, hdr, body := b.request(t, c.method, c.path, c.header, nil)
		require.Equal(t, c.code, code, "%s: %v", c.name, body)
		require.Equal(t, c.allow, hdr.Get("Access-Control-Allow-Origin"), c.name)
		if c.allow != "" || (c.code == 200 && c.header["Authorization"] == "" && c.header["Origin"] != "") {
			require.Equal(t, []string{"Origin"}, hdr.Values("Vary"), c.name)
		}
		if c.code == 204 {
			require.Contains(t, hdr.Get("Access-Control-Allow-Headers"), "Authorization", c.name)
			require.Contains(t, hdr.Get("Access-Control-Allow-Methods"), "POST", c.name)
		}
	}
}
