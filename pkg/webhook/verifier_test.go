package webhook_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/pkg/webhook"
)

// headers builds the three delivery headers; empty values are left out.
func headers(id, timestamp, signature string) http.Header {
	h := http.Header{}
	for name, value := range map[string]string{
		webhook.HeaderID:        id,
		webhook.HeaderTimestamp: timestamp,
		webhook.HeaderSignature: signature,
	} {
		if value != "" {
			h.Set(name, value)
		}
	}
	return h
}

// testBundle is a correctly signed delivery and a Verifier whose clock is
// the delivery's timestamp.
type testBundle struct {
	secret    string
	now       time.Time
	id        string
	timestamp string
	signature string
	body      []byte
	verifier  *webhook.Verifier
}

func setup(t *testing.T) *testBundle {
	t.Helper()

	secret, err := webhook.GenerateSecret()
	require.NoError(t, err)
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	b := &testBundle{
		secret:    secret,
		now:       now,
		id:        "0193a7c2-5b1e-7c3a-9f2e-6a1d2b3c4d5e",
		timestamp: strconv.FormatInt(now.Unix(), 10),
		body:      []byte(`{"id":"0193a7c2-5b1e-7c3a-9f2e-6a1d2b3c4d5e","type":"card.closed","seq":1234}`),
	}
	b.signature, err = webhook.Sign(secret, b.id, now, b.body)
	require.NoError(t, err)
	b.verifier, err = webhook.NewVerifier(secret, webhook.WithClock(func() time.Time { return now }))
	require.NoError(t, err)
	return b
}

func TestVerifierVerify(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		modify  func(b *testBundle, h http.Header)
		wantErr error
		wantMsg string
	}{
		{name: "valid"},
		{name: "body tampered", modify: func(b *testBundle, h http.Header) { b.body = append(b.body, ' ') }, wantErr: webhook.ErrNoMatchingSignature},
		{name: "empty body instead", modify: func(b *testBundle, h http.Header) { b.body = nil }, wantErr: webhook.ErrNoMatchingSignature},
		{name: "id changed", modify: func(b *testBundle, h http.Header) { h.Set(webhook.HeaderID, "other") }, wantErr: webhook.ErrNoMatchingSignature},
		{name: "timestamp changed by a second", modify: func(b *testBundle, h http.Header) {
			h.Set(webhook.HeaderTimestamp, strconv.FormatInt(b.now.Unix()-1, 10))
		}, wantErr: webhook.ErrNoMatchingSignature},
		{name: "missing id", modify: func(b *testBundle, h http.Header) { h.Del(webhook.HeaderID) }, wantErr: webhook.ErrMissingHeaders, wantMsg: "webhook-id"},
		{name: "missing timestamp", modify: func(b *testBundle, h http.Header) { h.Del(webhook.HeaderTimestamp) }, wantErr: webhook.ErrMissingHeaders, wantMsg: "webhook-timestamp"},
		{name: "missing signature", modify: func(b *testBundle, h http.Header) { h.Del(webhook.HeaderSignature) }, wantErr: webhook.ErrMissingHeaders, wantMsg: "webhook-signature"},
		{name: "blank signature", modify: func(b *testBundle, h http.Header) { h.Set(webhook.HeaderSignature, "   ") }, wantErr: webhook.ErrMissingHeaders, wantMsg: "webhook-signature"},
		{name: "all missing", modify: func(b *testBundle, h http.Header) { clear(h) }, wantErr: webhook.ErrMissingHeaders, wantMsg: "webhook-id, webhook-timestamp, webhook-signature"},
		{name: "svix headers are not read", modify: func(b *testBundle, h http.Header) {
			for _, name := range []string{"id", "timestamp", "signature"} {
				h.Set("svix-"+name, h.Get("webhook-"+name))
				h.Del("webhook-" + name)
			}
		}, wantErr: webhook.ErrMissingHeaders},
		{name: "timestamp not a number", modify: func(b *testBundle, h http.Header) { h.Set(webhook.HeaderTimestamp, "hello") }, wantErr: webhook.ErrInvalidHeaders},
		{name: "timestamp with a sign", modify: func(b *testBundle, h http.Header) { h.Set(webhook.HeaderTimestamp, "+"+b.timestamp) }, wantErr: webhook.ErrInvalidHeaders},
		{name: "timestamp in milliseconds overflows", modify: func(b *testBundle, h http.Header) { h.Set(webhook.HeaderTimestamp, "99999999999999999999") }, wantErr: webhook.ErrInvalidHeaders},
		{name: "timestamp with a fraction", modify: func(b *testBundle, h http.Header) { h.Set(webhook.HeaderTimestamp, b.timestamp+".5") }, wantErr: webhook.ErrInvalidHeaders},
		{name: "timestamp as RFC 3339", modify: func(b *testBundle, h http.Header) { h.Set(webhook.HeaderTimestamp, b.now.Format(time.RFC3339)) }, wantErr: webhook.ErrInvalidHeaders},
		{name: "id with a dot", modify: func(b *testBundle, h http.Header) { h.Set(webhook.HeaderID, "a.b") }, wantErr: webhook.ErrInvalidHeaders},
		{name: "too old", modify: func(b *testBundle, h http.Header) { b.now = b.now.Add(5*time.Minute + time.Second) }, wantErr: webhook.ErrTimestampTooOld, wantMsg: "sent 5m1s ago, tolerance 5m0s"},
		{name: "just old enough", modify: func(b *testBundle, h http.Header) { b.now = b.now.Add(5 * time.Minute) }},
		{name: "too new", modify: func(b *testBundle, h http.Header) { b.now = b.now.Add(-5*time.Minute - time.Second) }, wantErr: webhook.ErrTimestampTooNew, wantMsg: "sent 5m1s in the future"},
		{name: "just new enough", modify: func(b *testBundle, h http.Header) { b.now = b.now.Add(-5 * time.Minute) }},
		{name: "timestamp in milliseconds is too new", modify: func(b *testBundle, h http.Header) {
			h.Set(webhook.HeaderTimestamp, strconv.FormatInt(b.now.UnixMilli(), 10))
		}, wantErr: webhook.ErrTimestampTooNew},
		{name: "timestamp zero is too old", modify: func(b *testBundle, h http.Header) { h.Set(webhook.HeaderTimestamp, "0") }, wantErr: webhook.ErrTimestampTooOld},
		{name: "largest timestamp is too new", modify: func(b *testBundle, h http.Header) { h.Set(webhook.HeaderTimestamp, "9223372036854775807") }, wantErr: webhook.ErrTimestampTooNew},
		{name: "wrong signature", modify: func(b *testBundle, h http.Header) { h.Set(webhook.HeaderSignature, vectorOtherSignature) }, wantErr: webhook.ErrNoMatchingSignature, wantMsg: "none of the 1 v1 signatures"},
		{name: "partial signature", modify: func(b *testBundle, h http.Header) { h.Set(webhook.HeaderSignature, "v1,") }, wantErr: webhook.ErrNoMatchingSignature},
		{name: "truncated signature", modify: func(b *testBundle, h http.Header) { h.Set(webhook.HeaderSignature, b.signature[:len(b.signature)-1]) }, wantErr: webhook.ErrNoMatchingSignature},
		{name: "signature without version", modify: func(b *testBundle, h http.Header) {
			h.Set(webhook.HeaderSignature, strings.TrimPrefix(b.signature, "v1,"))
		}, wantErr: webhook.ErrNoMatchingSignature, wantMsg: "has no v1 signature"},
		{name: "upper-case version", modify: func(b *testBundle, h http.Header) { h.Set(webhook.HeaderSignature, "V1"+b.signature[2:]) }, wantErr: webhook.ErrNoMatchingSignature},
		{name: "only v1a", modify: func(b *testBundle, h http.Header) { h.Set(webhook.HeaderSignature, "v1a"+b.signature[2:]) }, wantErr: webhook.ErrNoMatchingSignature, wantMsg: "has no v1 signature"},
		{name: "right signature among others", modify: func(b *testBundle, h http.Header) {
			h.Set(webhook.HeaderSignature, strings.Join([]string{vectorOtherSignature, "v2," + b.signature[3:], b.signature, "v1a,bm9wZQ=="}, " "))
		}},
		{name: "right signature after a v1a one", modify: func(b *testBundle, h http.Header) {
			h.Set(webhook.HeaderSignature, "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg== "+b.signature)
		}},
		{name: "extra spaces between signatures", modify: func(b *testBundle, h http.Header) {
			h.Set(webhook.HeaderSignature, "  "+vectorOtherSignature+"   "+b.signature+" ")
		}},
		{name: "signatures on two header lines", modify: func(b *testBundle, h http.Header) {
			h.Set(webhook.HeaderSignature, vectorOtherSignature)
			h.Add(webhook.HeaderSignature, b.signature)
		}},
		{name: "signature with a trailing comma part", modify: func(b *testBundle, h http.Header) { h.Set(webhook.HeaderSignature, b.signature+",x") }, wantErr: webhook.ErrNoMatchingSignature},
		{name: "other secret", modify: func(b *testBundle, h http.Header) {
			sig, err := webhook.Sign(vectorSecret, b.id, b.now, b.body)
			if err != nil {
				panic(err)
			}
			h.Set(webhook.HeaderSignature, sig)
		}, wantErr: webhook.ErrNoMatchingSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			b := setup(t)
			h := headers(b.id, b.timestamp, b.signature)
			if tt.modify != nil {
				tt.modify(b, h)
			}
			v, err := webhook.NewVerifier(b.secret, webhook.WithClock(func() time.Time { return b.now }))
			require.NoError(t, err)
			err = v.Verify(h, b.body)
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
			for _, other := range []error{webhook.ErrMissingHeaders, webhook.ErrInvalidHeaders, webhook.ErrTimestampTooOld, webhook.ErrTimestampTooNew, webhook.ErrNoMatchingSignature} {
				if !errors.Is(other, tt.wantErr) {
					require.False(t, errors.Is(err, other), "%v is also %v", err, other)
				}
			}
			require.ErrorContains(t, err, tt.wantMsg)
		})
	}
}

func TestVerifierTolerance(t *testing.T) {
	t.Parallel()

	b := setup(t)
	h := headers(b.id, b.timestamp, b.signature)
	later := b.now.Add(time.Hour)

	v, err := webhook.NewVerifier(b.secret, webhook.WithClock(func() time.Time { return later }))
	require.NoError(t, err)
	require.ErrorIs(t, v.Verify(h, b.body), webhook.ErrTimestampTooOld)

	v, err = webhook.NewVerifier(b.secret, webhook.WithClock(func() time.Time { return later }), webhook.WithTolerance(time.Hour))
	require.NoError(t, err)
	require.NoError(t, v.Verify(h, b.body))

	for _, d := range []time.Duration{0, -time.Second} {
		_, err = webhook.NewVerifier(b.secret, webhook.WithTolerance(d))
		require.ErrorContains(t, err, "tolerance must be positive")
	}
}

func TestNewVerifierInvalidSecret(t *testing.T) {
	t.Parallel()

	_, err := webhook.NewVerifier("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.ErrorIs(t, err, webhook.ErrInvalidSecret)

	err = webhook.Verify("whsec_!!", http.Header{}, nil)
	require.ErrorIs(t, err, webhook.ErrInvalidSecret)
}

func TestVerify(t *testing.T) {
	t.Parallel()

	secret, err := webhook.GenerateSecret()
	require.NoError(t, err)
	now := time.Now()
	body := []byte(`{"type":"card.closed"}`)
	sig, err := webhook.Sign(secret, "evt_1", now, body)
	require.NoError(t, err)
	h := headers("evt_1", strconv.FormatInt(now.Unix(), 10), sig)

	require.NoError(t, webhook.Verify(secret, h, body))
	require.ErrorIs(t, webhook.Verify(secret, h, []byte(`{}`)), webhook.ErrNoMatchingSignature)

	// A nil clock means the real one.
	v, err := webhook.NewVerifier(secret, webhook.WithClock(nil))
	require.NoError(t, err)
	require.NoError(t, v.Verify(h, body))
}

func TestVerifierConcurrentUse(t *testing.T) {
	t.Parallel()

	b := setup(t)
	h := headers(b.id, b.timestamp, b.signature)
	done := make(chan error)
	for range 8 {
		go func() {
			var err error
			for range 100 {
				if err = b.verifier.Verify(h, b.body); err != nil {
					break
				}
			}
			done <- err
		}()
	}
	for range 8 {
		require.NoError(t, <-done)
	}
}
