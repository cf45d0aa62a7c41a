package webhook_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/pkg/webhook"
)

// The test vector of the Standard Webhooks specification, from the test
// suites of its reference libraries (libraries/go/webhook_test.go
// TestWebhookSign, and the same values in the JavaScript, Python, PHP, ...
// suites).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorMsgID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorPayload   = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	// A signature the reference suites use as a non-matching one.
	vectorOtherSignature = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
)

func TestSignStandardWebhooksVector(t *testing.T) {
	t.Parallel()

	sig, err := webhook.Sign(vectorSecret, vectorMsgID, time.Unix(vectorTimestamp, 0), []byte(vectorPayload))
	require.NoError(t, err)
	require.Equal(t, vectorSignature, sig)

	// Only whole seconds are signed.
	sig, err = webhook.Sign(vectorSecret, vectorMsgID, time.Unix(vectorTimestamp, 999_999_999).In(time.FixedZone("X", 3600)), []byte(vectorPayload))
	require.NoError(t, err)
	require.Equal(t, vectorSignature, sig)
}

func TestVerifyStandardWebhooksVector(t *testing.T) {
	t.Parallel()

	at := time.Unix(vectorTimestamp, 0)
	tests := []struct {
		name      string
		signature string
		now       time.Time
		body      string
		wantErr   error
	}{
		{name: "vector", signature: vectorSignature, now: at},
		{name: "vector among others", signature: vectorOtherSignature + " v1a,bm9wZQ== " + vectorSignature, now: at},
		{name: "v2 with the right value is ignored", signature: "v2" + strings.TrimPrefix(vectorSignature, "v1"), now: at, wantErr: webhook.ErrNoMatchingSignature},
		{name: "last character changed", signature: strings.TrimSuffix(vectorSignature, "E=") + "A=", now: at, wantErr: webhook.ErrNoMatchingSignature},
		{name: "other signature", signature: vectorOtherSignature, now: at, wantErr: webhook.ErrNoMatchingSignature},
		{name: "body with a space less", signature: vectorSignature, now: at, body: `{"test":2432232314}`, wantErr: webhook.ErrNoMatchingSignature},
		{name: "five minutes later", signature: vectorSignature, now: at.Add(5 * time.Minute)},
		{name: "five minutes and a second later", signature: vectorSignature, now: at.Add(5*time.Minute + time.Second), wantErr: webhook.ErrTimestampTooOld},
		{name: "five minutes earlier", signature: vectorSignature, now: at.Add(-5 * time.Minute)},
		{name: "five minutes and a second earlier", signature: vectorSignature, now: at.Add(-5*time.Minute - time.Second), wantErr: webhook.ErrTimestampTooNew},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			v, err := webhook.NewVerifier(vectorSecret, webhook.WithClock(func() time.Time { return tt.now }))
			require.NoError(t, err)
			body := tt.body
			if body == "" {
				body = vectorPayload
			}
			h := headers(vectorMsgID, "1614265330", tt.signature)
			err = v.Verify(h, []byte(body))
			if tt.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.wantErr)
			}
		})
	}
}

func TestSignAll(t *testing.T) {
	t.Parallel()

	oldSecret := vectorSecret
	newSecret, err := webhook.GenerateSecret()
	require.NoError(t, err)
	at := time.Unix(vectorTimestamp, 0)

	sig, err := webhook.SignAll([]string{newSecret, oldSecret}, vectorMsgID, at, []byte(vectorPayload))
	require.NoError(t, err)
	parts := strings.Split(sig, " ")
	require.Len(t, parts, 2)
	require.Equal(t, vectorSignature, parts[1], "signatures are in the order of the secrets")
	newSig, err := webhook.Sign(newSecret, vectorMsgID, at, []byte(vectorPayload))
	require.NoError(t, err)
	require.Equal(t, newSig, parts[0])

	// A receiver holding either secret accepts the delivery.
	clock := webhook.WithClock(func() time.Time { return at })
	for _, secret := range []string{oldSecret, newSecret} {
		v, err := webhook.NewVerifier(secret, clock)
		require.NoError(t, err)
		require.NoError(t, v.Verify(headers(vectorMsgID, "1614265330", sig), []byte(vectorPayload)))
	}
	// A receiver holding neither does not.
	third, err := webhook.GenerateSecret()
	require.NoError(t, err)
	v, err := webhook.NewVerifier(third, clock)
	require.NoError(t, err)
	require.ErrorIs(t, v.Verify(headers(vectorMsgID, "1614265330", sig), []byte(vectorPayload)), webhook.ErrNoMatchingSignature)
}

func TestSignErrors(t *testing.T) {
	t.Parallel()

	at := time.Unix(vectorTimestamp, 0)
	tests := []struct {
		name    string
		secrets []string
		msgID   string
		wantIs  error
		wantErr string
	}{
		{name: "no secret", secrets: nil, msgID: "m", wantErr: "no secret given"},
		{name: "invalid secret", secrets: []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, msgID: "m", wantIs: webhook.ErrInvalidSecret, wantErr: "secret 1 of 1"},
		{name: "second secret invalid", secrets: []string{vectorSecret, "whsec_short"}, msgID: "m", wantIs: webhook.ErrInvalidSecret, wantErr: "secret 2 of 2"},
		{name: "empty id", secrets: []string{vectorSecret}, msgID: "", wantErr: "message id is empty"},
		{name: "id with a dot", secrets: []string{vectorSecret}, msgID: "a.1614265330", wantErr: "contains '.'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			sig, err := webhook.SignAll(tt.secrets, tt.msgID, at, nil)
			require.ErrorContains(t, err, tt.wantErr)
			if tt.wantIs != nil {
				require.ErrorIs(t, err, tt.wantIs)
			}
			require.Empty(t, sig)
		})
	}
}
