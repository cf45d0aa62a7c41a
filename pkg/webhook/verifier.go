package webhook

import (
	"crypto/ed25519"
	"crypto/hmac"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock, in either direction, unless WithTolerance says otherwise.
// It is the value of the Standard Webhooks reference libraries.
const DefaultTolerance = 5 * time.Minute

// Errors returned by Verify, each wrapped with details; test with errors.Is.
// None of them means the delivery is authentic, so a receiver answers any of
// them with a 4xx status and does not process the body.
var (
	// ErrMissingHeaders: webhook-id, webhook-timestamp or webhook-signature
	// is absent or empty.
	ErrMissingHeaders = errors.New("webhook: missing header")
	// ErrInvalidHeaders: webhook-timestamp is not Unix seconds, or
	// webhook-id contains '.'.
	ErrInvalidHeaders = errors.New("webhook: invalid header")
	// ErrTimestampTooOld: webhook-timestamp is further in the past than the
	// tolerance: a replayed request, or a clock that is wrong.
	ErrTimestampTooOld = errors.New("webhook: timestamp too old")
	// ErrTimestampTooNew: webhook-timestamp is further in the future than
	// the tolerance, which points at a wrong clock.
	ErrTimestampTooNew = errors.New("webhook: timestamp too new")
	// ErrNoMatchingSignature: no v1 signature in webhook-signature matches
	// the id, timestamp and body for the secret: a wrong secret, a body
	// changed before verification (for example decoded and re-encoded), or
	// a forged request.
	ErrNoMatchingSignature = errors.New("webhook: no matching signature")
)

// Verifier checks the signature and the timestamp of deliveries signed with
// one endpoint secret. Build it once with NewVerifier; it is immutable and
// safe for concurrent use.
type Verifier struct {
	key       []byte            // HMAC key (whsec_)
	public    ed25519.PublicKey // or an Ed25519 public key (whpk_): v1a
	tolerance time.Duration
	now       func() time.Time
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithTolerance sets how far, in either direction, a delivery's timestamp
// may be from the current time. It must be positive; the default is
// DefaultTolerance.
func WithTolerance(d time.Duration) Option {
	return func(v *Verifier) { v.tolerance = d }
}

// WithClock sets the function that gives the current time, for tests. The
// default, also used when now is nil, is time.Now.
func WithClock(now func() time.Time) Option {
	return func(v *Verifier) { v.now = now }
}

// NewVerifier returns a Verifier for the endpoint secret ("whsec_..."). It
// fails if the secret is invalid, with an error wrapping ErrInvalidSecret
// (see ParseSecret), or if the tolerance is not positive.
func NewVerifier(secret string, opts ...Option) (*Verifier, error) {
	v := &Verifier{tolerance: DefaultTolerance, now: time.Now}
	if strings.HasPrefix(secret, PublicKeyPrefix) {
		pub, err := parsePublicKey(secret)
		if err != nil {
			return nil, err
		}
		v.public = pub
	} else {
		key, err := ParseSecret(secret)
		if err != nil {
			return nil, err
		}
		v.key = key
	}
	for _, opt := range opts {
		opt(v)
	}
	if v.tolerance <= 0 {
		return nil, fmt.Errorf("webhook: tolerance must be positive, got %s", v.tolerance)
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// Verify returns nil if body and headers are an authentic delivery: the
// three webhook headers are present, webhook-timestamp is within the
// tolerance of the current time, and at least one "v1," entry of
// webhook-signature is the signature of "{webhook-id}.{webhook-timestamp}.{body}"
// (compared in constant time). Entries of other versions, such as "v1a,",
// are ignored; several webhook-signature header lines are treated as one
// space-separated list.
//
// body must be the raw request body, exactly as received. Otherwise Verify
// returns an error wrapping ErrMissingHeaders, ErrInvalidHeaders,
// ErrTimestampTooOld, ErrTimestampTooNew or ErrNoMatchingSignature, checked
// in that order.
func (v *Verifier) Verify(headers http.Header, body []byte) error {
	msgID := headers.Get(HeaderID)
	rawTimestamp := headers.Get(HeaderTimestamp)
	var entries []string
	for _, line := range headers.Values(HeaderSignature) {
		entries = append(entries, strings.Fields(line)...)
	}

	var missing []string
	if msgID == "" {
		missing = append(missing, HeaderID)
	}
	if rawTimestamp == "" {
		missing = append(missing, HeaderTimestamp)
	}
	if len(entries) == 0 {
		missing = append(missing, HeaderSignature)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissingHeaders, strings.Join(missing, ", "))
	}

	if strings.Contains(msgID, ".") {
		return fmt.Errorf("%w: %s %q contains '.'", ErrInvalidHeaders, HeaderID, clip(msgID))
	}
	timestamp, err := parseTimestamp(rawTimestamp)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not Unix seconds", ErrInvalidHeaders, HeaderTimestamp, clip(rawTimestamp))
	}

	// time.Unix wraps around for seconds near the int64 limit; clamping
	// keeps absurd timestamps in the future, and time.Time.Sub saturates.
	age := v.now().Sub(time.Unix(min(timestamp, maxTimestamp), 0))
	switch {
	case age > v.tolerance:
		return fmt.Errorf("%w: sent %s ago, tolerance %s (a replayed request, or check the clocks)", ErrTimestampTooOld, age.Round(time.Second), v.tolerance)
	case age < -v.tolerance:
		return fmt.Errorf("%w: sent %s in the future, tolerance %s (check the clocks)", ErrTimestampTooNew, (-age).Round(time.Second), v.tolerance)
	}

	want := signatureVersion
	var expected, content []byte
	if v.public != nil {
		want, content = asymmetricVersion, signedContent(msgID, timestamp, body)
	} else {
		expected = signature(v.key, msgID, timestamp, body)
	}
	versions := 0
	for _, entry := range entries {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != want {
			continue
		}
		versions++
		if v.public != nil {
			raw, err := base64.StdEncoding.DecodeString(sig)
			if err == nil && ed25519.Verify(v.public, content, raw) {
				return nil
			}
			continue
		}
		if hmac.Equal([]byte(sig), expected) {
			return nil
		}
	}
	if versions == 0 {
		return fmt.Errorf("%w: %s has no %s signature", ErrNoMatchingSignature, HeaderSignature, want)
	}
	what := "secret"
	if v.public != nil {
		what = "public key"
	}
	return fmt.Errorf("%w: none of the %d %s signatures matches; check the %s, and verify the raw body before decoding it", ErrNoMatchingSignature, versions, want, what)
}

// Verify checks a delivery against one endpoint secret with the default
// tolerance; see Verifier.Verify. Receivers that verify many deliveries
// should build a Verifier once instead, which parses the secret only once.
func Verify(secret string, headers http.Header, body []byte) error {
	v, err := NewVerifier(secret)
	if err != nil {
		return err
	}
	return v.Verify(headers, body)
}

// maxTimestamp is 9999-12-31T23:59:59Z in Unix seconds.
const maxTimestamp = 253402300799

// parseTimestamp accepts only unsigned decimal digits, as the specification
// describes webhook-timestamp; strconv alone would also take a sign.
func parseTimestamp(s string) (int64, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// clip shortens a header value quoted in an error, which may end up in logs.
func clip(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
