package webhook_test

import (
	"encoding/base64"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/pkg/webhook"
)

// randomDelivery is a random secret, message id, timestamp and body of the
// shapes eventline produces: ids of the event-id alphabet, timestamps within
// a few minutes of now (the reference library always checks against the real
// clock), arbitrary bytes as body.
type randomDelivery struct {
	secret    string
	key       []byte
	id        string
	timestamp time.Time
	body      []byte
}

func newRandomDelivery(rng *rand.Rand, now time.Time) randomDelivery {
	const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
	key := make([]byte, webhook.MinSecretBytes+rng.IntN(webhook.MaxSecretBytes-webhook.MinSecretBytes+1))
	for i := range key {
		key[i] = byte(rng.Uint32())
	}
	id := make([]byte, 1+rng.IntN(64))
	for i := range id {
		id[i] = idAlphabet[rng.IntN(len(idAlphabet))]
	}
	body := make([]byte, rng.IntN(4096))
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	return randomDelivery{
		secret:    webhook.SecretPrefix + base64.StdEncoding.EncodeToString(key),
		key:       key,
		id:        string(id),
		timestamp: now.Add(time.Duration(rng.Int64N(int64(8*time.Minute))) - 4*time.Minute),
		body:      body,
	}
}

func (d randomDelivery) headers(signature string) http.Header {
	return headers(d.id, strconv.FormatInt(d.timestamp.Unix(), 10), signature)
}

// TestReferenceLibrary cross-checks this package with the Go library of the
// Standard Webhooks project, both ways, on random deliveries.
func TestReferenceLibrary(t *testing.T) {
	t.Parallel()

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	now := time.Now()

	for range 1000 {
		d := newRandomDelivery(rng, now)
		ref, err := standardwebhooks.NewWebhook(d.secret)
		require.NoError(t, err)
		v, err := webhook.NewVerifier(d.secret)
		require.NoError(t, err)

		// Both produce the same header value, at any time.
		for _, ts := range []time.Time{d.timestamp, time.Unix(rng.Int64N(1<<40), rng.Int64N(1e9))} {
			ours, err := webhook.Sign(d.secret, d.id, ts, d.body)
			require.NoError(t, err)
			theirs, err := ref.Sign(d.id, ts, d.body)
			require.NoError(t, err)
			require.Equal(t, theirs, ours, "id %q timestamp %d", d.id, ts.Unix())
		}

		// Ours verifies with theirs...
		ours, err := webhook.Sign(d.secret, d.id, d.timestamp, d.body)
		require.NoError(t, err)
		require.NoError(t, ref.Verify(d.body, d.headers(ours)))

		// ...and theirs with ours.
		theirs, err := ref.Sign(d.id, d.timestamp, d.body)
		require.NoError(t, err)
		require.NoError(t, v.Verify(d.headers(theirs), d.body))

		// A rotation header from SignAll verifies with theirs, whichever
		// secret the receiver holds.
		other := newRandomDelivery(rng, now)
		rotation, err := webhook.SignAll([]string{other.secret, d.secret}, d.id, d.timestamp, d.body)
		require.NoError(t, err)
		require.NoError(t, ref.Verify(d.body, d.headers(rotation)))
		refOther, err := standardwebhooks.NewWebhook(other.secret)
		require.NoError(t, err)
		require.NoError(t, refOther.Verify(d.body, d.headers(rotation)))

		// Both reject the same tampering.
		tampered := append([]byte("x"), d.body...)
		require.ErrorIs(t, ref.Verify(tampered, d.headers(ours)), standardwebhooks.ErrNoMatchingSignature)
		require.ErrorIs(t, v.Verify(d.headers(theirs), tampered), webhook.ErrNoMatchingSignature)
		require.ErrorIs(t, refOther.Verify(d.body, d.headers(ours)), standardwebhooks.ErrNoMatchingSignature)
		otherVerifier, err := webhook.NewVerifier(other.secret)
		require.NoError(t, err)
		require.ErrorIs(t, otherVerifier.Verify(d.headers(theirs), d.body), webhook.ErrNoMatchingSignature)
	}
}

// TestReferenceLibraryTimestamps checks that both libraries agree on the
// tolerance window, away from its edges (the reference library reads the
// real clock, so the exact edge cannot be pinned).
func TestReferenceLibraryTimestamps(t *testing.T) {
	t.Parallel()

	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now()
	for _, offset := range []time.Duration{-time.Hour, -6 * time.Minute, -4 * time.Minute, 0, 4 * time.Minute, 6 * time.Minute, time.Hour} {
		d := newRandomDelivery(rng, now)
		d.timestamp = now.Add(offset)
		sig, err := webhook.Sign(d.secret, d.id, d.timestamp, d.body)
		require.NoError(t, err)
		ref, err := standardwebhooks.NewWebhook(d.secret)
		require.NoError(t, err)

		refErr := ref.Verify(d.body, d.headers(sig))
		ourErr := webhook.Verify(d.secret, d.headers(sig), d.body)
		switch {
		case offset < -5*time.Minute:
			require.ErrorIs(t, refErr, standardwebhooks.ErrMessageTooOld)
			require.ErrorIs(t, ourErr, webhook.ErrTimestampTooOld)
		case offset > 5*time.Minute:
			require.ErrorIs(t, refErr, standardwebhooks.ErrMessageTooNew)
			require.ErrorIs(t, ourErr, webhook.ErrTimestampTooNew)
		default:
			require.NoError(t, refErr)
			require.NoError(t, ourErr)
		}
	}
}

// The reference library accepts a secret without its prefix; this package
// does not, so that a truncated copy-paste is caught where it happens.
func TestReferenceLibraryPrefix(t *testing.T) {
	t.Parallel()

	bare := strings.TrimPrefix(vectorSecret, webhook.SecretPrefix)
	ref, err := standardwebhooks.NewWebhook(bare)
	require.NoError(t, err)
	sig, err := ref.Sign(vectorMsgID, time.Unix(vectorTimestamp, 0), []byte(vectorPayload))
	require.NoError(t, err)
	require.Equal(t, vectorSignature, sig)

	_, err = webhook.NewVerifier(bare)
	require.ErrorIs(t, err, webhook.ErrInvalidSecret)
}
