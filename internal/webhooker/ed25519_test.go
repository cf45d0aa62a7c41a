package webhooker

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/pkg/webhook"
)

// TestEd25519Endpoint: an endpoint created with signing "ed25519" shows a
// public key and never its signing key; its deliveries carry v1a
// signatures the public key verifies; a rotation keeps the scheme and
// signs with both keys during the grace period.
func TestEd25519Endpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	rc := newReceiver(t, nil)
	code, out := b.call(t, http.MethodPost, "/v1/webhooks", map[string]any{"url": rc.URL, "events": []string{"*"}, "signing": "ed25519"})
	require.Equal(t, http.StatusCreated, code, "%v", out)
	require.Equal(t, "ed25519", out["signing"])
	require.Nil(t, out["secret"], "the signing key is never shown")
	pub, _ := out["public_key"].(string)
	require.True(t, strings.HasPrefix(pub, webhook.PublicKeyPrefix), "public_key %q", pub)
	id := out["id"].(string)
	require.Eventually(t, func() bool { _, ok := b.svc.registry.Get(id); return ok }, 5*time.Second, 5*time.Millisecond)

	code, got := b.call(t, http.MethodGet, "/v1/webhooks/"+id, nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, pub, got["public_key"], "GET shows the public key")

	b.publish(t, "e1")
	b.waitStatus(t, id, "succeeded", 1)
	first := rc.all()[0]
	require.True(t, strings.HasPrefix(first.header.Get(webhook.HeaderSignature), "v1a,"), first.header.Get(webhook.HeaderSignature))
	require.NoError(t, webhook.Verify(pub, first.header, first.body), "the public key verifies the delivery")

	code, rotated := b.call(t, http.MethodPost, "/v1/webhooks/"+id+"/secret/rotate", map[string]any{"grace_seconds": 3600})
	require.Equal(t, http.StatusOK, code, "%v", rotated)
	require.Nil(t, rotated["secret"])
	newPub := rotated["public_key"].(string)
	require.NotEqual(t, pub, newPub)
	require.Eventually(t, func() bool { e, _ := b.svc.registry.Get(id); return e.PublicKey == newPub }, 5*time.Second, 5*time.Millisecond)
	b.publish(t, "e2")
	b.waitStatus(t, id, "succeeded", 2)
	second := rc.all()[1]
	require.Len(t, strings.Fields(second.header.Get(webhook.HeaderSignature)), 2, "both keys sign during the grace period")
	require.NoError(t, webhook.Verify(newPub, second.header, second.body))
	require.NoError(t, webhook.Verify(pub, second.header, second.body))

	code, bad := b.call(t, http.MethodPost, "/v1/webhooks", map[string]any{"url": rc.URL, "events": []string{"*"}, "signing": "rsa"})
	require.Equal(t, http.StatusUnprocessableEntity, code, "%v", bad)
	code, bad = b.call(t, http.MethodPatch, "/v1/webhooks/"+id, map[string]any{"signing": "hmac"})
	require.Equal(t, http.StatusUnprocessableEntity, code, "%v", bad)
}
