// Package apikey issues and checks the API keys that authenticate HTTP
// clients. A key belongs to one tenant and carries scopes; it is shown once
// at creation as "el_<id>_<secret>" and stored as SHA-256(secret) only.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Scopes a key may carry.
const (
	ScopeIngest = "ingest" // append events
	ScopeRead   = "read"   // read timelines, notifications, deliveries
	ScopeAdmin  = "admin"  // manage webhooks, rules; implies read and ingest
)

// AllScopes lists the valid scopes.
var AllScopes = []string{ScopeIngest, ScopeRead, ScopeAdmin}

const (
	prefix    = "el_"
	idLen     = 16 // base32-ish lower-case characters
	secretLen = 32 // random bytes, base64url encoded to 43 characters
	idChars   = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// ErrInvalid means the presented key is malformed, unknown, revoked or
// wrong. Callers answer 401 and never say which.
var ErrInvalid = errors.New("invalid API key")

// Key is a stored key, without its secret.
type Key struct {
	ID          string
	Tenant      string
	Scopes      []string
	RateLimit   int // events per second; 0 means the service default
	Description string
	secretHash  []byte
}

// Allows reports whether the key carries scope; admin implies every scope.
func (k Key) Allows(scope string) bool {
	return slices.Contains(k.Scopes, scope) || slices.Contains(k.Scopes, ScopeAdmin)
}

// ParseScopes reads a comma-separated scope list and rejects unknown names.
func ParseScopes(s string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(AllScopes, p) {
			return nil, fmt.Errorf("unknown scope %q: use %s", p, strings.Join(AllScopes, ", "))
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("at least one scope is needed: %s", strings.Join(AllScopes, ", "))
	}
	return out, nil
}

// generate returns a new key id, its plaintext key and the secret's hash.
func generate() (id, plaintext string, hash []byte, err error) {
	raw := make([]byte, idLen+secretLen)
	if _, err := rand.Read(raw); err != nil {
		return "", "", nil, fmt.Errorf("read random bytes: %w", err)
	}
	idb := make([]byte, idLen)
	for i := range idb {
		idb[i] = idChars[int(raw[i])%len(idChars)]
	}
	secret := base64.RawURLEncoding.EncodeToString(raw[idLen:])
	sum := sha256.Sum256([]byte(secret))
	return string(idb), prefix + string(idb) + "_" + secret, sum[:], nil
}

// split parses "el_<id>_<secret>".
func split(plaintext string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(plaintext, prefix)
	if !ok || len(rest) < idLen+2 || rest[idLen] != '_' {
		return "", "", false
	}
	id, secret = rest[:idLen], rest[idLen+1:]
	if secret == "" || len(secret) > 128 {
		return "", "", false
	}
	return id, secret, true
}

// matches compares the secret against the stored hash in constant time.
func (k Key) matches(secret string) bool {
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], k.secretHash) == 1
}
