package webhook

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// SecretPrefix starts every endpoint secret, so that a secret is recognisable
// in a configuration file or a secret store.
const SecretPrefix = "whsec_"

// Bounds on the length of the decoded key of a secret, in bytes. The Standard
// Webhooks specification asks for at least 24 bytes (192 bits) and at most
// 64 (512 bits).
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// generatedSecretBytes is the key length GenerateSecret uses (256 bits).
const generatedSecretBytes = 32

// ErrInvalidSecret is returned, wrapped with the reason, for a secret that is
// not SecretPrefix followed by the standard base64 encoding (with padding) of
// MinSecretBytes to MaxSecretBytes bytes. The error never contains the secret.
var ErrInvalidSecret = errors.New("webhook: invalid secret")

// GenerateSecret returns a new random endpoint secret: SecretPrefix followed
// by the standard base64 encoding of 32 bytes from crypto/rand.
func GenerateSecret() (string, error) {
	key := make([]byte, generatedSecretBytes)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("generate webhook secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// ParseSecret returns the HMAC key of an endpoint secret: the bytes encoded
// after SecretPrefix. It fails with an error wrapping ErrInvalidSecret when
// the prefix is missing, the rest is not standard base64 with padding, or the
// key is shorter than MinSecretBytes or longer than MaxSecretBytes.
func ParseSecret(s string) ([]byte, error) {
	encoded, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: it must start with %q; use the secret exactly as eventline returned it", ErrInvalidSecret, SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		// A CorruptInputError only carries an offset, so this does not leak
		// the secret.
		return nil, fmt.Errorf("%w: the part after %q is not standard base64 with padding: %w", ErrInvalidSecret, SecretPrefix, err)
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return nil, fmt.Errorf("%w: it decodes to %d bytes, want %d to %d", ErrInvalidSecret, len(key), MinSecretBytes, MaxSecretBytes)
	}
	return key, nil
}
