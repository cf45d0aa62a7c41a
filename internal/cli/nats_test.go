package cli_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/cli"
	"github.com/eventline/eventline/internal/natsauth/callout"
)

// TestNATSCalloutKeys: callout-keys prints a seed ingest accepts and its
// public key, which nats config renders as the callout's issuer; a key of
// another kind is refused.
func TestNATSCalloutKeys(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, 0, cli.Run(context.Background(), []string{"nats", "callout-keys"}, &out, &errOut), errOut.String())
	vars := map[string]string{}
	for line := range strings.SplitSeq(out.String(), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			vars[k] = v
		}
	}
	kp, err := callout.ParseIssuer(vars["NATS_CALLOUT_ISSUER_SEED"])
	require.NoError(t, err)
	public, err := kp.PublicKey()
	require.NoError(t, err)
	require.Equal(t, public, vars["NATS_CALLOUT_ISSUER"])

	out.Reset()
	require.Equal(t, 0, cli.Run(context.Background(), []string{"nats", "config", "--callout-issuer", public}, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), `issuer: "`+public+`"`)
	require.Contains(t, out.String(), "auth_users")

	errOut.Reset()
	require.NotEqual(t, 0, cli.Run(context.Background(), []string{"nats", "config", "--callout-issuer", "UABC"}, &out, &errOut))
	require.Contains(t, errOut.String(), "public account key")
}
