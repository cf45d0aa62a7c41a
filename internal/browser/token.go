// Package browser is what eventline lets a web page use directly
// (docs/browser.md): short-lived per-user tokens an application's backend
// mints with its API key, the guard that accepts them (with CORS for the
// origins a tenant configured) on the inbox and timeline APIs, the admin
// APIs for tokens and origins, and the drop-in components served under
// /components/. Browsers hold user tokens, never API keys
// (docs/architecture.md §13).
package browser

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/eventline/eventline/pkg/events"
)

// Token scopes. A token always names one (tenant, user).
const (
	// ScopeInbox reads the user's own inbox, marks it read and opens its
	// event stream.
	ScopeInbox = "inbox"
	// ScopeTimeline reads the timelines the token lists (Claims.Timelines).
	ScopeTimeline = "timeline"
)

// Token lifetimes.
const (
	DefaultTTL = 15 * time.Minute
	MaxTTL     = 24 * time.Hour
	// MinSecretLen is the shortest USER_TOKEN_SECRET accepted.
	MinSecretLen = 16
	// MaxTimelines bounds the timelines one token may list.
	MaxTimelines = 16
)

// tokenPrefix tells a user token from an API key ("el_") at a glance.
const tokenPrefix = "elu_"

// maxTokenLen bounds what is decoded before the signature is checked.
const maxTokenLen = 4096

var (
	// ErrInvalid means the token is malformed, its signature does not
	// verify (tampered, or signed with another secret) or it is not a
	// token at all. Callers answer 401 and never say which.
	ErrInvalid = errors.New("invalid user token")
	// ErrExpired means the token was valid and has expired.
	ErrExpired = errors.New("user token expired")
)

// Claims is what a token grants: Scopes for User of Tenant until Expires.
type Claims struct {
	Tenant    string       `json:"t"`
	User      string       `json:"u"`
	Scopes    []string     `json:"s"`
	Timelines []events.Ref `json:"tl,omitempty"`
	Expires   int64        `json:"exp"` // Unix seconds
}

// Allows reports whether the claims carry scope.
func (c Claims) Allows(scope string) bool { return slices.Contains(c.Scopes, scope) }

// AllowsTimeline reports whether the claims may read the timeline of obj.
func (c Claims) AllowsTimeline(obj events.Ref) bool {
	return c.Allows(ScopeTimeline) && slices.Contains(c.Timelines, obj)
}

// Signer mints and verifies tokens with a key derived from the server
// secret USER_TOKEN_SECRET, which every replica of the services that
// verify tokens (notifier, projector) must share. Safe for concurrent use.
type Signer struct {
	key []byte
	now func() time.Time
}

// NewSigner returns a Signer for secret, which must have at least
// MinSecretLen characters.
func NewSigner(secret string) (*Signer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("USER_TOKEN_SECRET: set at least %d characters (the same on every notifier and projector replica) to mint and accept user tokens", MinSecretLen)
	}
	// A key of its own: the secret may also sign other things.
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("eventline user token v1"))
	return &Signer{key: m.Sum(nil), now: time.Now}, nil
}

// Mint returns a token for c; c.Expires must be in the future.
func (s *Signer) Mint(c Claims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode token claims: %w", err)
	}
	body := tokenPrefix + base64.RawURLEncoding.EncodeToString(payload)
	return body + "." + base64.RawURLEncoding.EncodeToString(s.sign(body)), nil
}

func (s *Signer) sign(body string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(body))
	return m.Sum(nil)
}

// Verify returns the claims of a token whose signature verifies and that
// has not expired; ErrInvalid or ErrExpired otherwise.
func (s *Signer) Verify(token string) (Claims, error) {
	if len(token) > maxTokenLen || !strings.HasPrefix(token, tokenPrefix) {
		return Claims{}, ErrInvalid
	}
	body, sig, ok := strings.Cut(token, ".")
	if !ok {
		return Claims{}, ErrInvalid
	}
	// Only the canonical spelling is a token: base64 decoding skips line
	// breaks and ignores unused trailing bits, so re-encoding must give
	// back exactly what was sent.
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || base64.RawURLEncoding.EncodeToString(got) != sig || !hmac.Equal(got, s.sign(body)) {
		return Claims{}, ErrInvalid
	}
	payload, err := base64.RawURLEncoding.DecodeString(body[len(tokenPrefix):])
	if err != nil || base64.RawURLEncoding.EncodeToString(payload) != body[len(tokenPrefix):] {
		return Claims{}, ErrInvalid
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil || !events.IsTenant(c.Tenant) || c.User == "" {
		return Claims{}, ErrInvalid
	}
	if !s.now().Before(time.Unix(c.Expires, 0)) {
		return Claims{}, ErrExpired
	}
	return c, nil
}

// LooksLikeToken reports whether s has the form of a user token rather
// than an API key.
func LooksLikeToken(s string) bool { return strings.HasPrefix(s, tokenPrefix) }
