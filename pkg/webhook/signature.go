package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The delivery headers, as the Standard Webhooks specification spells them.
// http.Header canonicalises names, so use these with Header.Get and
// Header.Set rather than as map keys.
const (
	// HeaderID carries the message id, which eventline sets to the event
	// id; it is the same on every retry of a delivery, so receivers use it
	// as an idempotency key.
	HeaderID = "webhook-id"
	// HeaderTimestamp carries the time of this attempt in Unix seconds.
	HeaderTimestamp = "webhook-timestamp"
	// HeaderSignature carries one or more space-separated signatures, each
	// a version, a comma and the signature: "v1,<base64>".
	HeaderSignature = "webhook-signature"
)

// signatureVersion identifies HMAC-SHA256 signatures; asymmetricVersion
// (v1a) Ed25519 ones (ed25519.go).
const signatureVersion = "v1"

// Sign returns the webhook-signature header value for one delivery:
// "v1," followed by the standard base64 encoding of
// HMAC-SHA256(key, "{msgID}.{unix seconds}.{body}"), where key is
// ParseSecret(secret) and the timestamp is truncated to whole seconds.
// Send the same timestamp in HeaderTimestamp and the exact body signed.
//
// msgID must be non-empty and must not contain '.', which would make the
// signed content ambiguous. An invalid secret yields an error wrapping
// ErrInvalidSecret.
func Sign(secret, msgID string, timestamp time.Time, body []byte) (string, error) {
	return SignAll([]string{secret}, msgID, timestamp, body)
}

// SignAll returns the webhook-signature header value for a delivery signed
// with several secrets, as during a secret rotation: one "v1,<base64>"
// signature per secret (or "v1a,<base64>" per Ed25519 signing key, whsk_), in the order given, separated by single spaces.
// eventline passes the newest secret first; receivers accept the delivery if
// any signature matches, so the order does not affect verification.
//
// It fails if secrets is empty, if any secret is invalid (wrapping
// ErrInvalidSecret) or if msgID is invalid (see Sign).
func SignAll(secrets []string, msgID string, timestamp time.Time, body []byte) (string, error) {
	if len(secrets) == 0 {
		return "", errors.New("sign webhook: no secret given")
	}
	if err := checkMsgID(msgID); err != nil {
		return "", fmt.Errorf("sign webhook: %w", err)
	}
	var b strings.Builder
	for i, s := range secrets {
		if i > 0 {
			b.WriteByte(' ')
		}
		if IsSigningKey(s) {
			key, err := parseSigningKey(s)
			if err != nil {
				return "", fmt.Errorf("sign webhook with key %d of %d: %w", i+1, len(secrets), err)
			}
			b.WriteString(asymmetricVersion + ",")
			b.Write(signEd25519(key, msgID, timestamp.Unix(), body))
			continue
		}
		key, err := ParseSecret(s)
		if err != nil {
			return "", fmt.Errorf("sign webhook with secret %d of %d: %w", i+1, len(secrets), err)
		}
		b.WriteString(signatureVersion)
		b.WriteByte(',')
		b.Write(signature(key, msgID, timestamp.Unix(), body))
	}
	return b.String(), nil
}

// checkMsgID rejects message ids that cannot be signed unambiguously.
func checkMsgID(msgID string) error {
	if msgID == "" {
		return errors.New("message id is empty")
	}
	if strings.Contains(msgID, ".") {
		return fmt.Errorf("message id %q contains '.'", msgID)
	}
	return nil
}

// signature returns base64(HMAC-SHA256(key, "{msgID}.{timestamp}.{body}")).
func signature(key []byte, msgID string, timestamp int64, body []byte) []byte {
	mac := hmac.New(sha256.New, key)
	var buf [24]byte
	mac.Write([]byte(msgID))
	mac.Write(append(strconv.AppendInt(append(buf[:0], '.'), timestamp, 10), '.'))
	mac.Write(body)
	sum := mac.Sum(nil)
	out := make([]byte, base64.StdEncoding.EncodedLen(len(sum)))
	base64.StdEncoding.Encode(out, sum)
	return out
}
