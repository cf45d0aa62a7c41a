package webhook

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// Asymmetric signing, as Standard Webhooks specifies it: an endpoint that
// opts in is signed with an Ed25519 key; its deliveries carry
// "v1a,<base64 signature>" over the same "{msgID}.{timestamp}.{body}", and
// receivers verify with the public key, which the webhook API shows. The
// signing key never leaves eventline.
const (
	// SigningKeyPrefix starts an Ed25519 signing key: "whsk_" and the
	// standard base64 of the 64-byte private key.
	SigningKeyPrefix = "whsk_"
	// PublicKeyPrefix starts an Ed25519 public key: "whpk_" and the
	// standard base64 of the 32-byte public key.
	PublicKeyPrefix = "whpk_"

	asymmetricVersion = "v1a"
)

// GenerateSigningKey returns a new Ed25519 signing key (whsk_...).
func GenerateSigningKey() (string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate webhook signing key: %w", err)
	}
	return SigningKeyPrefix + base64.StdEncoding.EncodeToString(priv), nil
}

// IsSigningKey says whether secret is an Ed25519 signing key (whsk_...)
// rather than a symmetric secret (whsec_...).
func IsSigningKey(secret string) bool { return strings.HasPrefix(secret, SigningKeyPrefix) }

func parseSigningKey(s string) (ed25519.PrivateKey, error) {
	encoded, ok := strings.CutPrefix(s, SigningKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: a signing key starts with %q", ErrInvalidSecret, SigningKeyPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil || len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: a signing key is %q and the base64 of %d bytes", ErrInvalidSecret, SigningKeyPrefix, ed25519.PrivateKeySize)
	}
	return ed25519.PrivateKey(key), nil
}

// PublicKey returns the public key (whpk_...) of a signing key, which
// receivers verify v1a signatures with.
func PublicKey(signingKey string) (string, error) {
	priv, err := parseSigningKey(signingKey)
	if err != nil {
		return "", err
	}
	return PublicKeyPrefix + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)), nil
}

func parsePublicKey(s string) (ed25519.PublicKey, error) {
	encoded, ok := strings.CutPrefix(s, PublicKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: a public key starts with %q", ErrInvalidSecret, PublicKeyPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: a public key is %q and the base64 of %d bytes", ErrInvalidSecret, PublicKeyPrefix, ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(key), nil
}

// signedContent is what both schemes sign: "{msgID}.{timestamp}.{body}".
func signedContent(msgID string, timestamp int64, body []byte) []byte {
	out := make([]byte, 0, len(msgID)+len(body)+24)
	out = append(out, msgID...)
	out = append(out, '.')
	out = strconv.AppendInt(out, timestamp, 10)
	out = append(out, '.')
	return append(out, body...)
}

// signEd25519 returns base64(Ed25519(key, "{msgID}.{timestamp}.{body}")).
func signEd25519(key ed25519.PrivateKey, msgID string, timestamp int64, body []byte) []byte {
	sig := ed25519.Sign(key, signedContent(msgID, timestamp, body))
	out := make([]byte, base64.StdEncoding.EncodedLen(len(sig)))
	base64.StdEncoding.Encode(out, sig)
	return out
}
