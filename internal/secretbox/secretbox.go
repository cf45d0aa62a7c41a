// Package secretbox seals small secrets (webhook signing secrets) for
// storage with AES-256-GCM under a key from configuration, never from the
// database. A sealed value names the key that sealed it, so keys can be
// rotated: a Keyring seals with its primary key and opens with any key it
// holds. Callers bind a sealed value to where it is stored with additional
// data (for a webhook endpoint: its tenant and id), so a value copied into
// another row does not open.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

const (
	version   = 1
	keyIDLen  = 8 // hex characters
	headerLen = 1 + keyIDLen
	nonceLen  = 12
	// KeyLen is the length of a key in bytes (AES-256).
	KeyLen = 32
)

var (
	// ErrUnknownKey means a value was sealed with a key the keyring does
	// not hold: configure it as an old key.
	ErrUnknownKey = errors.New("sealed with a key that is not configured")
	// ErrOpen means a value did not open: it was tampered with, belongs to
	// other additional data, or the key with its id is not the one that
	// sealed it.
	ErrOpen = errors.New("sealed value does not open: wrong key, wrong row or tampered")
	// ErrFormat means the bytes are not a sealed value at all.
	ErrFormat = errors.New("not a sealed value")
)

// Keyring holds the primary key, which seals, and old keys, which only
// open. It is safe for concurrent use.
type Keyring struct {
	primary *key
	byID    map[string]*key
}

type key struct {
	id   string
	aead cipher.AEAD
	raw  []byte // for Derive
}

// GenerateKey returns a new random key, base64 encoded as NewKeyring
// expects it.
func GenerateKey() (string, error) {
	b := make([]byte, KeyLen)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// NewKeyring parses the primary key and any old keys, each the base64
// (standard or URL alphabet, padded or not) of 32 random bytes. Errors
// never contain key material.
func NewKeyring(primary string, old ...string) (*Keyring, error) {
	p, err := parseKey(primary)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	kr := &Keyring{primary: p, byID: map[string]*key{p.id: p}}
	for i, s := range old {
		k, err := parseKey(s)
		if err != nil {
			return nil, fmt.Errorf("old secret key %d: %w", i+1, err)
		}
		if _, dup := kr.byID[k.id]; !dup {
			kr.byID[k.id] = k
		}
	}
	return kr, nil
}

func parseKey(s string) (*key, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("is empty; generate one with `openssl rand -base64 32`")
	}
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("is not base64; generate one with `openssl rand -base64 32`")
	}
	if len(raw) != KeyLen {
		return nil, fmt.Errorf("decodes to %d bytes, want %d; generate one with `openssl rand -base64 32`", len(raw), KeyLen)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("eventline secretbox key id\x00"), raw...))
	return &key{id: hex.EncodeToString(sum[:])[:keyIDLen], aead: aead, raw: raw}, nil
}

// Derive returns a 32-byte key for purpose derived from the primary key
// (HMAC-SHA256 of the purpose under it): another use of the same
// configured secret, such as signing short-lived tokens, gets a key of its
// own that reveals nothing of the sealing key. It changes when the primary
// key is rotated.
func (k *Keyring) Derive(purpose string) []byte {
	h := hmac.New(sha256.New, k.primary.raw)
	h.Write([]byte("eventline secretbox derive\x00" + purpose))
	return h.Sum(nil)
}

// PrimaryID is the id of the key Seal uses. Ids are derived from the keys
// (a hash prefix), so the same key always has the same id.
func (k *Keyring) PrimaryID() string { return k.primary.id }

// Seal encrypts plaintext with the primary key, authenticating aad with
// it. The result is: version byte, key id, nonce, ciphertext and tag.
func (k *Keyring) Seal(plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, headerLen+nonceLen, headerLen+nonceLen+len(plaintext)+k.primary.aead.Overhead())
	out[0] = version
	copy(out[1:headerLen], k.primary.id)
	if _, err := rand.Read(out[headerLen:]); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return k.primary.aead.Seal(out, out[headerLen:], plaintext, additional(out[:headerLen], aad)), nil
}

// Open decrypts a value Seal made with any key of the keyring and the
// same aad.
func (k *Keyring) Open(sealed, aad []byte) ([]byte, error) {
	id, err := KeyID(sealed)
	if err != nil {
		return nil, err
	}
	key, ok := k.byID[id]
	if !ok {
		return nil, fmt.Errorf("key id %s: %w", id, ErrUnknownKey)
	}
	if len(sealed) < headerLen+nonceLen+key.aead.Overhead() {
		return nil, ErrFormat
	}
	nonce := sealed[headerLen : headerLen+nonceLen]
	plain, err := key.aead.Open(nil, nonce, sealed[headerLen+nonceLen:], additional(sealed[:headerLen], aad))
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

// KeyID returns the id of the key that sealed a value.
func KeyID(sealed []byte) (string, error) {
	if len(sealed) < headerLen || sealed[0] != version {
		return "", ErrFormat
	}
	id := string(sealed[1:headerLen])
	if _, err := hex.DecodeString(id); err != nil {
		return "", ErrFormat
	}
	return id, nil
}

// additional authenticates the header (so the key id cannot be swapped)
// together with the caller's data.
func additional(header, aad []byte) []byte {
	out := make([]byte, 0, len(header)+len(aad))
	return append(append(out, header...), aad...)
}
