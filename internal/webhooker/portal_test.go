package webhooker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/safehttp"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
	"github.com/eventline/eventline/pkg/events"
)

// portalBundle is a webhooker whose API accepts portal tokens, as the
// binary wires it, with keys checked without a cache (revocation is seen
// at once) and the bundle's fake clock.
type portalBundle struct {
	*bundle
	url  string
	keys *apikey.Store
}

func setupPortal(t *testing.T) *portalBundle {
	t.Helper()
	b := setup(t, options{allowPrivate: true})
	keys := apikey.NewStore(b.pool, -1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := NewPortal(keys, PortalConfig{SigningKey: b.secrets.Derive(PortalTokenPrefix), Now: b.clock.Now, FrameAncestors: "https://app.example.com"}, log)
	require.NoError(t, err)
	client, err := safehttp.New(safehttp.Config{AllowPrivate: true, Timeout: 5 * time.Second})
	require.NoError(t, err)
	mux := http.NewServeMux()
	NewAPI(b.svc.Store(), b.svc.Ledger(), p, client, b.svc.js, b.clock.Now, log).Routes(mux)
	p.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &portalBundle{bundle: b, url: srv.URL, keys: keys}
}

// do sends a request with a bearer credential and decodes a JSON answer.
func (p *portalBundle) do(t *testing.T, credential, method, path string, body any) (int, map[string]any) {
	t.Helper()
	return request(t, p.url, credential, method, path, body)
}

func (p *portalBundle) key(t *testing.T, tenant string, scopes ...string) (apikey.Key, string) {
	t.Helper()
	k, plain, err := p.keys.Create(context.Background(), apikey.CreateParams{Tenant: tenant, Scopes: scopes})
	require.NoError(t, err)
	return k, plain
}

func (p *portalBundle) mint(t *testing.T, key string, body any) string {
	t.Helper()
	code, out := p.do(t, key, http.MethodPost, "/v1/portal-tokens", body)
	require.Equal(t, http.StatusCreated, code, "%v", out)
	token := out["token"].(string)
	require.True(t, strings.HasPrefix(token, PortalTokenPrefix), token)
	require.Equal(t, p.url+"/portal#token="+token, out["url"])
	return token
}

// A portal token acts as its tenant's admin on the webhook API, within
// its tenant only, until it expires; a tampered one, one of another kind
// or one whose minting key was revoked is refused with 401.
func TestPortalToken(t *testing.T) {
	t.Parallel()
	p := setupPortal(t)
	_, acmeAdmin := p.key(t, "acme", apikey.ScopeAdmin)
	_, otherAdmin := p.key(t, "other", apikey.ScopeAdmin)
	_, acmeRead := p.key(t, "acme", apikey.ScopeRead, apikey.ScopeIngest)

	token := p.mint(t, acmeAdmin, nil)
	code, out := p.do(t, token, http.MethodPost, "/v1/webhooks", map[string]any{"url": "http://127.0.0.1:9/hook", "events": []string{"*"}})
	require.Equal(t, http.StatusCreated, code, "%v", out)
	acmeEndpoint := out["id"].(string)
	code, out = p.do(t, token, http.MethodGet, "/v1/webhooks", nil)
	require.Equal(t, http.StatusOK, code, "%v", out)
	require.Len(t, out["webhooks"], 1)

	// Scope: only an admin key mints; a portal token never mints another.
	code, _ = p.do(t, acmeRead, http.MethodPost, "/v1/portal-tokens", nil)
	require.Equal(t, http.StatusForbidden, code)
	code, _ = p.do(t, token, http.MethodPost, "/v1/portal-tokens", nil)
	require.Equal(t, http.StatusUnauthorized, code)
	code, out = p.do(t, acmeAdmin, http.MethodPost, "/v1/portal-tokens", map[string]any{"ttl_seconds": 50000})
	require.Equal(t, http.StatusUnprocessableEntity, code)
	require.Equal(t, "ttl_seconds", out["errors"].([]any)[0].(map[string]any)["field"])

	// Cross-tenant: another tenant's token neither sees nor changes acme's
	// endpoint, and lists only its own.
	otherToken := p.mint(t, otherAdmin, nil)
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/v1/webhooks/" + acmeEndpoint},
		{http.MethodPatch, "/v1/webhooks/" + acmeEndpoint},
		{http.MethodPost, "/v1/webhooks/" + acmeEndpoint + "/test"},
		{http.MethodPost, "/v1/webhooks/" + acmeEndpoint + "/secret/rotate"},
		{http.MethodGet, "/v1/webhooks/" + acmeEndpoint + "/deliveries"},
		{http.MethodDelete, "/v1/webhooks/" + acmeEndpoint},
	} {
		var body any
		if c.method == http.MethodPatch {
			body = map[string]any{"events": []string{"card.closed"}}
		}
		code, out := p.do(t, otherToken, c.method, c.path, body)
		require.Equal(t, http.StatusNotFound, code, "%s %s: %v", c.method, c.path, out)
	}
	code, out = p.do(t, otherToken, http.MethodGet, "/v1/webhooks", nil)
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, out["webhooks"])

	// Tampering: any changed byte of the payload or the MAC, a token
	// signed with another key, and an API key dressed as a token.
	payload, mac, _ := strings.Cut(strings.TrimPrefix(token, PortalTokenPrefix), ".")
	forged := []string{
		PortalTokenPrefix + flip(payload) + "." + mac,
		PortalTokenPrefix + payload + "." + flip(mac),
		PortalTokenPrefix + payload,
		PortalTokenPrefix + otherPayload(t, payload) + "." + mac, // claims another tenant
		PortalTokenPrefix + acmeAdmin,
		strings.TrimPrefix(token, PortalTokenPrefix),
	}
	otherKey, err := NewPortal(p.keys, PortalConfig{SigningKey: testenv.Keyring(t).Derive(PortalTokenPrefix), Now: p.clock.Now}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	foreign, _, err := otherKey.signer.Mint(portalClaims{Tenant: "acme", KeyID: strings.Split(acmeAdmin, "_")[1]}, time.Hour)
	require.NoError(t, err)
	forged = append(forged, foreign)
	for _, f := range forged {
		code, _ := p.do(t, f, http.MethodGet, "/v1/webhooks", nil)
		require.Equal(t, http.StatusUnauthorized, code, f)
	}

	// Expiry: refused once its lifetime has passed.
	short := p.mint(t, acmeAdmin, map[string]any{"ttl_seconds": 60})
	code, _ = p.do(t, short, http.MethodGet, "/v1/webhooks", nil)
	require.Equal(t, http.StatusOK, code)
	p.clock.Add(61 * time.Second)
	code, _ = p.do(t, short, http.MethodGet, "/v1/webhooks", nil)
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = p.do(t, token, http.MethodGet, "/v1/webhooks", nil) // an hour: still valid
	require.Equal(t, http.StatusOK, code)

	// Revoking the minting key ends its tokens.
	require.NoError(t, p.keys.Revoke(context.Background(), strings.Split(acmeAdmin, "_")[1]))
	code, _ = p.do(t, token, http.MethodGet, "/v1/webhooks", nil)
	require.Equal(t, http.StatusUnauthorized, code)
}

// flip changes the first character of s.
func flip(s string) string {
	if s[0] == 'A' {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}

// otherPayload rewrites the payload's tenant to "other", keeping it well
// formed: a MAC over the original must not cover it.
func otherPayload(t *testing.T, payload string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(bytes.Replace(raw, []byte(`"t":"acme"`), []byte(`"t":"other"`), 1))
}

// The test event reaches the one endpoint it tests, whatever its filter,
// signed like any delivery, shows in its log and can be retried; other
// endpoints of the tenant, even those taking every event, never see it.
func TestPortalTestEvent(t *testing.T) {
	t.Parallel()
	p := setupPortal(t)
	_, admin := p.key(t, "acme", apikey.ScopeAdmin)
	token := p.mint(t, admin, nil)
	target := newReceiver(t, nil)
	bystander := newReceiver(t, nil)
	code, out := p.do(t, token, http.MethodPost, "/v1/webhooks", map[string]any{"url": target.URL, "events": []string{"card.closed"}})
	require.Equal(t, http.StatusCreated, code, "%v", out)
	id := out["id"].(string)
	code, out = p.do(t, token, http.MethodPost, "/v1/webhooks", map[string]any{"url": bystander.URL, "events": []string{"*"}})
	require.Equal(t, http.StatusCreated, code, "%v", out)
	require.Eventually(t, func() bool { _, ok := p.svc.registry.Get(out["id"].(string)); return ok }, 5*time.Second, 5*time.Millisecond)

	code, out = p.do(t, token, http.MethodPost, "/v1/webhooks/"+id+"/test", nil)
	require.Equal(t, http.StatusAccepted, code, "%v", out)
	ev := out["event"].(map[string]any)
	require.Equal(t, endpoint.TestEventType, ev["type"])
	p.clock.Add(testEventDelay)
	p.scheduleUntil(t, id, 1)
	ds := p.waitAttempts(t, id, 1)
	require.Len(t, ds, 1)
	require.Equal(t, endpoint.TestEventType, ds[0].EventType)
	require.Equal(t, delivery.StatusSucceeded, ds[0].Status)
	require.Equal(t, http.StatusOK, ds[0].Attempts[0].StatusCode)
	got := target.all()
	require.Len(t, got, 1)
	require.Equal(t, ev["id"], got[0].header.Get("webhook-id"))
	var body events.Event
	require.NoError(t, json.Unmarshal(got[0].body, &body))
	require.Equal(t, events.Ref{Type: "webhook", ID: id}, body.Eventable)

	// Retry from the portal: a second attempt with the same webhook-id.
	code, _ = p.do(t, token, http.MethodPost, "/v1/deliveries/"+ds[0].ID+"/retry", nil)
	require.Equal(t, http.StatusAccepted, code)
	p.scheduleUntil(t, id, 2)
	require.Equal(t, ev["id"], target.all()[1].header.Get("webhook-id"))

	// The fan-out passed the test event without giving it to the others.
	p.waitFannedOut(t, uint64(ev["seq"].(float64)))
	require.Empty(t, bystander.all())

	// A disabled endpoint is not tested.
	code, _ = p.do(t, token, http.MethodPost, "/v1/webhooks/"+id+"/disable", nil)
	require.Equal(t, http.StatusOK, code)
	code, out = p.do(t, token, http.MethodPost, "/v1/webhooks/"+id+"/test", nil)
	require.Equal(t, http.StatusUnprocessableEntity, code, "%v", out)
}

// scheduleUntil runs the retry scheduler until the endpoint's deliveries
// have n attempts (the service may still be starting: its scheduler is
// made by Run).
func (p *portalBundle) scheduleUntil(t *testing.T, endpointID string, n int) {
	t.Helper()
	testenv.Poll(t, 10*time.Second, fmt.Sprintf("%d attempts", n), func() bool {
		_, _ = p.svc.ScheduleNow(context.Background())
		total := 0
		for _, d := range p.deliveries(t, endpointID) {
			total += len(d.Attempts)
		}
		return total >= n
	})
}

// The page is served embeddable by the configured ancestors only, with
// its scripts from this origin, and nothing outside its files.
func TestPortalPage(t *testing.T) {
	t.Parallel()
	p := setupPortal(t)
	for path, ctype := range map[string]string{"/portal": "text/html", "/portal/portal.js": "text/javascript", "/portal/portal.css": "text/css"} {
		resp, err := http.Get(p.url + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.Contains(t, resp.Header.Get("Content-Type"), ctype, path)
		require.Contains(t, resp.Header.Get("Content-Security-Policy"), "frame-ancestors https://app.example.com", path)
		require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'self'", path)
		require.Empty(t, resp.Header.Get("X-Frame-Options"))
		require.NotEmpty(t, body)
	}
	for _, path := range []string{"/portal/nope.js", "/portal/..%2fapi.go", "/portal/.hidden"} {
		resp, err := http.Get(p.url + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode, path)
	}
}
