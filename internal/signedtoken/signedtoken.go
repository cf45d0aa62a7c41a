// Package signedtoken mints and verifies short-lived bearer tokens that
// carry their own claims: "<prefix><payload>.<mac>", where payload is the
// base64url of a JSON object holding the claims and the expiry, and mac is
// the base64url of HMAC-SHA256(key, prefix + payload). Nothing is stored:
// a token is valid while its MAC verifies under the key and it has not
// expired. The prefix names the kind of token and is part of what is
// signed, so a token of one kind never verifies as another even under the
// same key (docs/security.md).
package signedtoken

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrInvalid means the token is malformed, of another kind, or its MAC
// does not verify (tampered, or signed with another key).
var ErrInvalid = errors.New("invalid token")

// ErrExpired means the token verified but its expiry has passed.
var ErrExpired = errors.New("expired token")

// MinKeyLen is the shortest key a Signer accepts.
const MinKeyLen = 32

// Signer mints and verifies tokens of one kind. It is safe for concurrent
// use.
type Signer struct {
	key    []byte
	prefix string
	now    func() time.Time
}

// New returns a Signer of tokens that start with prefix, signed with key
// (at least MinKeyLen bytes). now is the clock; nil means time.Now.
func New(key []byte, prefix string, now func() time.Time) (*Signer, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("token signing key has %d bytes; it needs at least %d", len(key), MinKeyLen)
	}
	if prefix == "" || strings.Contains(prefix, ".") {
		return nil, fmt.Errorf("token prefix %q must be non-empty and contain no '.'", prefix)
	}
	if now == nil {
		now = time.Now
	}
	return &Signer{key: bytes.Clone(key), prefix: prefix, now: now}, nil
}

// envelope is the signed payload.
type envelope struct {
	Exp    int64           `json:"exp"`
	Claims json.RawMessage `json:"c"`
}

// Mint returns a token carrying claims (any JSON-encodable value) that
// expires after ttl.
func (s *Signer) Mint(claims any, ttl time.Duration) (token string, expires time.Time, err error) {
	if ttl <= 0 {
		return "", time.Time{}, errors.New("a token needs a positive lifetime")
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("encode token claims: %w", err)
	}
	expires = s.now().Add(ttl).Truncate(time.Second)
	raw, err := json.Marshal(envelope{Exp: expires.Unix(), Claims: c})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("encode token: %w", err)
	}
	payload := base64.RawURLEncoding.EncodeToString(raw)
	return s.prefix + payload + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload)), expires, nil
}

// Verify checks token and decodes its claims into dst. It returns
// ErrInvalid for a token that is malformed, of another kind or whose MAC
// does not verify, ErrExpired for one past its expiry, and the expiry
// otherwise. The MAC is checked, in constant time, before anything in the
// payload is believed.
func (s *Signer) Verify(token string, dst any) (time.Time, error) {
	rest, ok := strings.CutPrefix(token, s.prefix)
	if !ok || len(rest) > 8<<10 || strings.IndexFunc(rest, notTokenChar) >= 0 {
		return time.Time{}, ErrInvalid
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return time.Time{}, ErrInvalid
	}
	mac, err := strict.DecodeString(sig)
	if err != nil || !hmac.Equal(mac, s.mac(payload)) {
		return time.Time{}, ErrInvalid
	}
	raw, err := strict.DecodeString(payload)
	if err != nil {
		return time.Time{}, ErrInvalid
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil || env.Exp == 0 {
		return time.Time{}, ErrInvalid
	}
	exp := time.Unix(env.Exp, 0)
	if !s.now().Before(exp) {
		return exp, ErrExpired
	}
	if err := json.Unmarshal(env.Claims, dst); err != nil {
		return time.Time{}, ErrInvalid
	}
	return exp, nil
}

// notTokenChar is true outside base64url and the separator: the decoder
// would skip newlines, which would let variants of a token verify.
func notTokenChar(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '-', r == '_', r == '.':
		return false
	}
	return true
}

// strict refuses encodings with stray trailing bits, so that exactly one
// string is the token: no variant of a valid token verifies.
var strict = base64.RawURLEncoding.Strict()

func (s *Signer) mac(payload string) []byte {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte(s.prefix))
	h.Write([]byte(payload))
	return h.Sum(nil)
}
