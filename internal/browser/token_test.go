package browser

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/pkg/events"
)

const testSecret = "test-user-token-secret-0123456789"

func TestTokenRoundTripExpiryAndTampering(t *testing.T) {
	t.Parallel()
	s, err := NewSigner(testSecret)
	require.NoError(t, err)
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	c := Claims{Tenant: "acme", User: "u1", Scopes: []string{ScopeInbox}, Expires: now.Add(time.Minute).Unix()}
	tok, err := s.Mint(c)
	require.NoError(t, err)
	require.True(t, LooksLikeToken(tok))
	got, err := s.Verify(tok)
	require.NoError(t, err)
	require.Equal(t, c, got)

	// Expired at its expiry second and after.
	now = now.Add(time.Minute)
	_, err = s.Verify(tok)
	require.ErrorIs(t, err, ErrExpired)
	now = now.Add(-time.Minute)

	// Another user in the payload with the old signature.
	body, sig, _ := strings.Cut(tok, ".")
	forged := Claims{Tenant: "acme", User: "u2", Scopes: []string{ScopeInbox}, Expires: c.Expires}
	other, err := s.Mint(forged)
	require.NoError(t, err)
	otherBody, _, _ := strings.Cut(other, ".")
	for name, bad := range map[string]string{
		"payload swapped":   otherBody + "." + sig,
		"signature flipped": body + "." + flip(sig),
		"no signature":      body,
		"empty":             "",
		"an api key":        "el_abcdefghijklmnop_secret",
		"payload not json":  tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte("x")) + "." + sig,
		"too long":          tokenPrefix + strings.Repeat("a", maxTokenLen),
		"signature not b64": body + ".***",
		// The same bytes spelled otherwise: base64 decoding skips line
		// breaks and ignores the last character's unused bits.
		"line break in the signature": body + "." + sig[:10] + "\n" + sig[10:],
		"line break in the payload":   body[:12] + "\r\n" + body[12:] + "." + sig,
		"unused bits changed":         body + "." + sig[:len(sig)-1] + string(unusedBitsFlipped(sig[len(sig)-1])),
		"signed by a stranger": func() string {
			s2, _ := NewSigner("another-secret-entirely-0123456789")
			tok, _ := s2.Mint(c)
			return tok
		}(),
	} {
		_, err := s.Verify(bad)
		require.ErrorIs(t, err, ErrInvalid, name)
	}

	_, err = NewSigner("short")
	require.ErrorContains(t, err, "USER_TOKEN_SECRET")
}

// unusedBitsFlipped changes the lowest bit of a base64url character, which
// the last character of a 32-byte value does not use.
func unusedBitsFlipped(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	return alphabet[strings.IndexByte(alphabet, c)^1]
}

func flip(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func TestClaimsScopes(t *testing.T) {
	t.Parallel()
	b1 := events.Ref{Type: "board", ID: "b1"}
	c := Claims{Scopes: []string{ScopeInbox}, Timelines: []events.Ref{b1}}
	require.True(t, c.Allows(ScopeInbox))
	require.False(t, c.AllowsTimeline(b1), "a timeline needs the timeline scope")
	c.Scopes = append(c.Scopes, ScopeTimeline)
	require.True(t, c.AllowsTimeline(b1))
	require.False(t, c.AllowsTimeline(events.Ref{Type: "board", ID: "b2"}))
}

func TestParseMint(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		body   string
		fields []string
		scopes []string
		ttl    time.Duration
	}{
		{body: `{"user_id":"u1"}`, scopes: []string{"inbox"}, ttl: DefaultTTL},
		{body: `{"user_id":"u1","ttl_seconds":60,"timelines":[{"type":"board","id":"b1"}]}`, scopes: []string{"inbox", "timeline"}, ttl: time.Minute},
		{body: `{"user_id":"u1","scopes":["timeline"]}`, fields: []string{"timelines"}},
		{body: `{}`, fields: []string{"user_id"}},
		{body: `{"user_id":"u1","ttl_seconds":5}`, fields: []string{"ttl_seconds"}},
		{body: `{"user_id":"u1","ttl_seconds":100000}`, fields: []string{"ttl_seconds"}},
		{body: `{"user_id":"u1","scopes":["admin"]}`, fields: []string{"scopes[0]"}},
		{body: `{"user_id":"u1","timelines":[{"type":"Board","id":"b1"}]}`, fields: []string{"timelines[0].type"}},
		{body: `{"user_id":"u1","tenant":"other"}`, fields: []string{"body"}},
		{body: `{"user_id":"u1"} {}`, fields: []string{"body"}},
	} {
		claims, ttl, errs := ParseMint([]byte(c.body))
		var fields []string
		for _, e := range errs {
			fields = append(fields, e.Field)
		}
		require.Equal(t, c.fields, fields, c.body)
		if len(c.fields) == 0 {
			require.Equal(t, c.scopes, claims.Scopes, c.body)
			require.Equal(t, c.ttl, ttl, c.body)
		}
	}
}

func TestCheckOrigin(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://App.Example.com":  "https://app.example.com",
		"http://localhost:3000":    "http://localhost:3000",
		"https://app.example.com/": "https://app.example.com",
		"ftp://x":                  "",
		"https://a.com/path":       "",
		"https://u:p@a.com":        "",
		"*":                        "",
		"https://a.com?x=1":        "",
	} {
		got, err := CheckOrigin(in)
		if want == "" {
			require.Error(t, err, in)
			continue
		}
		require.NoError(t, err, in)
		require.Equal(t, want, got)
	}
}
