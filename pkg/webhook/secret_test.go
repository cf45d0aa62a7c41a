package webhook_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/pkg/webhook"
)

func TestGenerateSecret(t *testing.T) {
	t.Parallel()

	seen := make(map[string]bool)
	for range 100 {
		secret, err := webhook.GenerateSecret()
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(secret, "whsec_"), secret)
		require.Len(t, secret, len("whsec_")+44) // 32 bytes in padded base64

		key, err := webhook.ParseSecret(secret)
		require.NoError(t, err)
		require.Len(t, key, 32)
		require.Equal(t, secret, "whsec_"+base64.StdEncoding.EncodeToString(key))

		require.False(t, seen[secret], "GenerateSecret repeated itself")
		seen[secret] = true
	}
}

func TestParseSecret(t *testing.T) {
	t.Parallel()

	encode := func(n int) string {
		return base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", n)))
	}
	tests := []struct {
		name    string
		secret  string
		wantLen int
		wantErr string // substring of the error; empty: no error
	}{
		{name: "standard webhooks test secret", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", wantLen: 24},
		{name: "24 bytes", secret: "whsec_" + encode(24), wantLen: 24},
		{name: "32 bytes", secret: "whsec_" + encode(32), wantLen: 32},
		{name: "64 bytes", secret: "whsec_" + encode(64), wantLen: 64},
		{name: "23 bytes", secret: "whsec_" + encode(23), wantErr: "decodes to 23 bytes, want 24 to 64"},
		{name: "65 bytes", secret: "whsec_" + encode(65), wantErr: "decodes to 65 bytes, want 24 to 64"},
		{name: "empty", secret: "", wantErr: `must start with "whsec_"`},
		{name: "prefix only", secret: "whsec_", wantErr: "decodes to 0 bytes"},
		{name: "no prefix", secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", wantErr: `must start with "whsec_"`},
		{name: "other prefix", secret: "whpk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", wantErr: `must start with "whsec_"`},
		{name: "upper-case prefix", secret: "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", wantErr: `must start with "whsec_"`},
		{name: "url-safe alphabet", secret: "whsec_" + base64.URLEncoding.EncodeToString([]byte(strings.Repeat("\xfb\xff", 16))), wantErr: "not standard base64"},
		{name: "missing padding", secret: "whsec_" + base64.RawStdEncoding.EncodeToString([]byte(strings.Repeat("k", 25))), wantErr: "not standard base64"},
		{name: "space inside", secret: "whsec_MfKQ9r8GKYqrTwjU PD8ILPZIo2LaLaSw", wantErr: "not standard base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			key, err := webhook.ParseSecret(tt.secret)
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.Len(t, key, tt.wantLen)
				return
			}
			require.ErrorIs(t, err, webhook.ErrInvalidSecret)
			require.ErrorContains(t, err, tt.wantErr)
			require.Nil(t, key)
			if encoded := strings.TrimPrefix(tt.secret, "whsec_"); len(encoded) > 8 {
				require.NotContains(t, err.Error(), encoded, "the error must not reveal the secret")
			}
		})
	}
}
