package webhooker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/safehttp"
	"github.com/eventline/eventline/internal/secretbox"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
)

// storedSecrets is an endpoint's secrets columns as the database holds them.
type storedSecrets struct {
	plain, sealed []byte
	keyID         *string
}

func readStored(t *testing.T, pool *pgxpool.Pool, id string) storedSecrets {
	t.Helper()
	var s storedSecrets
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT secrets, secrets_sealed, secrets_key FROM webhook.endpoints WHERE id = $1`, id).
		Scan(&s.plain, &s.sealed, &s.keyID))
	return s
}

// requireSealed checks that the row holds no plaintext secret and none of
// secrets in any form (whsec_..., the raw base64, the decoded bytes).
func requireSealed(t *testing.T, s storedSecrets, keyID string, secrets ...string) {
	t.Helper()
	require.Nil(t, s.plain, "no plaintext secrets column")
	require.NotEmpty(t, s.sealed)
	require.NotNil(t, s.keyID)
	require.Equal(t, keyID, *s.keyID)
	for _, sec := range secrets {
		raw := strings.TrimPrefix(sec, "whsec_")
		decoded, err := base64.StdEncoding.DecodeString(raw)
		require.NoError(t, err)
		for _, needle := range [][]byte{[]byte(sec), []byte(raw), decoded} {
			require.False(t, bytes.Contains(s.sealed, needle), "a secret is readable in the stored row")
		}
	}
}

func newTestKey(t *testing.T) string {
	t.Helper()
	k, err := secretbox.GenerateKey()
	require.NoError(t, err)
	return k
}

func keyring(t *testing.T, primary string, old ...string) *secretbox.Keyring {
	t.Helper()
	kr, err := secretbox.NewKeyring(primary, old...)
	require.NoError(t, err)
	return kr
}

// TestSecretsSealedAtRest: the API's create and rotate store secrets only
// sealed, and deliveries are still signed with them.
func TestSecretsSealedAtRest(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	rc := newReceiver(t, nil)
	id, first := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"*"}})
	kid := b.svc.cfg.Secrets.PrimaryID()
	requireSealed(t, readStored(t, b.pool, id), kid, first)

	code, out := b.call(t, http.MethodPost, "/v1/webhooks/"+id+"/secret/rotate", map[string]any{"grace_seconds": 3600})
	require.Equal(t, http.StatusOK, code, "%v", out)
	second := out["secret"].(string)
	requireSealed(t, readStored(t, b.pool, id), kid, first, second)

	e, err := b.svc.Store().GetEndpoint(context.Background(), "acme", id)
	require.NoError(t, err)
	require.Equal(t, []string{second, first}, e.ActiveSecrets(b.clock.Now()))
}

// insertPlaintext writes an endpoint the way migration 0004 stored it.
func insertPlaintext(t *testing.T, pool *pgxpool.Pool, tenant, id, secret string) {
	t.Helper()
	raw, err := json.Marshal([]map[string]any{{"secret": secret, "expires_at": nil}})
	require.NoError(t, err)
	_, err = pool.Exec(context.Background(), `INSERT INTO webhook.endpoints (tenant, id, url, events, secrets) VALUES ($1, $2, 'https://example.com/h', '{*}', $3)`,
		tenant, id, raw)
	require.NoError(t, err)
}

// TestPlaintextSecretsSealedOnStartAndKeyRotation: rows from before
// sealing are sealed on start; after a key rotation the old key still
// opens them and the start-up pass re-seals them with the new one; a row
// sealed with a key that is not configured stops the start with its key id.
func TestPlaintextSecretsSealedOnStartAndKeyRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Pool(t)
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	insertPlaintext(t, pool, "acme", "ep-1", secret)
	insertPlaintext(t, pool, "other", "ep-2", secret)

	k1, k2 := newTestKey(t), newTestKey(t)
	kr1 := keyring(t, k1)
	s1 := endpoint.NewStore(pool, kr1)
	n, err := s1.SealSecrets(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	requireSealed(t, readStored(t, pool, "ep-1"), kr1.PrimaryID(), secret)
	n, err = s1.SealSecrets(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "nothing left to seal")
	e, err := s1.GetEndpoint(ctx, "acme", "ep-1")
	require.NoError(t, err)
	require.Equal(t, []string{secret}, e.ActiveSecrets(e.CreatedAt))

	// Rotation: k2 is primary, k1 still configured as old.
	kr2 := keyring(t, k2, k1)
	s2 := endpoint.NewStore(pool, kr2)
	e, err = s2.GetEndpoint(ctx, "acme", "ep-1")
	require.NoError(t, err, "the old key still opens")
	require.Equal(t, []string{secret}, e.ActiveSecrets(e.CreatedAt))
	n, err = s2.SealSecrets(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	requireSealed(t, readStored(t, pool, "ep-2"), kr2.PrimaryID(), secret)
	// Now k1 can be dropped.
	e, err = endpoint.NewStore(pool, keyring(t, k2)).GetEndpoint(ctx, "other", "ep-2")
	require.NoError(t, err)
	require.Equal(t, []string{secret}, e.ActiveSecrets(e.CreatedAt))

	// A keyring without the sealing key refuses to start, naming the key.
	_, err = endpoint.NewStore(pool, keyring(t, newTestKey(t))).SealSecrets(ctx)
	require.ErrorIs(t, err, secretbox.ErrUnknownKey)
	require.ErrorContains(t, err, kr2.PrimaryID())
	require.ErrorContains(t, err, "EVENTLINE_OLD_SECRET_KEYS")
}

// TestSealedSecretsAreBoundToTheirRow: sealed secrets copied into another
// endpoint's row do not open there.
func TestSealedSecretsAreBoundToTheirRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Pool(t)
	insertPlaintext(t, pool, "acme", "ep-a", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	insertPlaintext(t, pool, "acme", "ep-b", "whsec_c2Vjb25kIHNlY3JldCBvZiBlcC1iIQ==")
	insertPlaintext(t, pool, "evil", "ep-a2", "whsec_c2Vjb25kIHNlY3JldCBvZiBlcC1iIQ==")
	s := endpoint.NewStore(pool, keyring(t, newTestKey(t)))
	_, err := s.SealSecrets(ctx)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE webhook.endpoints b SET secrets_sealed = a.secrets_sealed FROM webhook.endpoints a
		WHERE a.id = 'ep-a' AND b.id IN ('ep-b', 'ep-a2')`)
	require.NoError(t, err)
	_, err = s.GetEndpoint(ctx, "acme", "ep-b")
	require.ErrorIs(t, err, secretbox.ErrOpen, "another endpoint's secrets")
	_, err = s.GetEndpoint(ctx, "evil", "ep-a2")
	require.ErrorIs(t, err, secretbox.ErrOpen, "another tenant's secrets")
	e, err := s.GetEndpoint(ctx, "acme", "ep-a")
	require.NoError(t, err)
	require.Equal(t, []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, e.ActiveSecrets(e.CreatedAt))
}

// TestAPIRunsUnderRowLevelSecurity: the webhook API reads through the
// application role's policies. A restrictive policy added for
// eventline_app hides rows whose tenant and id the API asks for; were the
// API running as the owner, it would return them.
func TestAPIRunsUnderRowLevelSecurity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Pool(t)
	store := endpoint.NewStore(pool, keyring(t, newTestKey(t)))
	keys := apikey.NewStore(pool, 0)
	_, key, err := keys.Create(ctx, apikey.CreateParams{Tenant: "acme", Scopes: []string{apikey.ScopeAdmin}})
	require.NoError(t, err)
	client, err := safehttp.New(safehttp.Config{AllowPrivate: true})
	require.NoError(t, err)
	mux := http.NewServeMux()
	NewAPI(store, delivery.NewLedger(pool, delivery.DisableRule{}, 0), keys, client, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil))).Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	call := func(method, path string, body string) (int, map[string]any) {
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, out := call(http.MethodPost, "/v1/webhooks", `{"url": "http://127.0.0.1:1/hook", "events": ["*"]}`)
	require.Equal(t, http.StatusCreated, code, "%v", out)
	visible := out["id"].(string)
	code, out = call(http.MethodPost, "/v1/webhooks", `{"url": "http://127.0.0.1:1/hook", "events": ["*"]}`)
	require.Equal(t, http.StatusCreated, code, "%v", out)
	hidden := out["id"].(string)
	for _, sql := range []string{
		`INSERT INTO webhook.deliveries (id, tenant, endpoint_id, event_id, event_seq, event_type) VALUES
			('d-visible', 'acme', '` + visible + `', 'e1', 1, 'card.closed'), ('d-hidden', 'acme', '` + visible + `', 'e2', 2, 'probe.hidden')`,
		`CREATE POLICY probe ON webhook.endpoints AS RESTRICTIVE TO eventline_app USING (id <> '` + hidden + `')`,
		`CREATE POLICY probe ON webhook.deliveries AS RESTRICTIVE TO eventline_app USING (event_type <> 'probe.hidden')`,
	} {
		_, err := pool.Exec(ctx, sql)
		require.NoError(t, err)
	}

	code, _ = call(http.MethodGet, "/v1/webhooks/"+hidden, "")
	require.Equal(t, http.StatusNotFound, code, "the policy hides the endpoint from the API")
	code, _ = call(http.MethodPost, "/v1/webhooks/"+hidden+"/disable", "")
	require.Equal(t, http.StatusNotFound, code, "and from its updates")
	code, out = call(http.MethodGet, "/v1/webhooks", "")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, out["webhooks"], 1)
	require.Equal(t, visible, out["webhooks"].([]any)[0].(map[string]any)["id"])
	code, out = call(http.MethodGet, "/v1/webhooks/"+visible+"/deliveries", "")
	require.Equal(t, http.StatusOK, code, "%v", out)
	require.Len(t, out["deliveries"], 1)
	require.Equal(t, "d-visible", out["deliveries"].([]any)[0].(map[string]any)["id"])
	code, _ = call(http.MethodPost, "/v1/deliveries/d-hidden/retry", "")
	require.Equal(t, http.StatusNotFound, code)
	code, _ = call(http.MethodPost, "/v1/deliveries/d-visible/retry", "")
	require.Equal(t, http.StatusAccepted, code)

	// The owner (the workers' path) still sees everything.
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM webhook.endpoints WHERE id = $1 AND enabled`, hidden).Scan(&n))
	require.Equal(t, 1, n)
}
