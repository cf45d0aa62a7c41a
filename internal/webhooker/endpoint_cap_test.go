package webhooker

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/openapitest"
	"github.com/eventline/eventline/internal/safehttp"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
)

// cappedAPI serves the webhook API over a fresh database with a cap of
// maxEndpoints per tenant (WEBHOOK_MAX_ENDPOINTS, docs/webhooks.md); every
// answer is checked against api/openapi.yaml.
func cappedAPI(t *testing.T, maxEndpoints int) (url, key string, count func(tenant string) int) {
	t.Helper()
	pool := testenv.Pool(t)
	client, err := safehttp.New(safehttp.Config{AllowPrivate: true, Timeout: time.Second})
	require.NoError(t, err)
	keys := apikey.NewStore(pool, 0)
	_, key, err = keys.Create(context.Background(), apikey.CreateParams{Tenant: "acme", Scopes: []string{apikey.ScopeAdmin}})
	require.NoError(t, err)
	mux := http.NewServeMux()
	NewAPI(endpoint.NewStore(pool, testenv.Keyring(t)), delivery.NewLedger(pool, delivery.DisableRule{}, 0), keys, client, nil, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil))).
		WithMaxEndpoints(maxEndpoints).Routes(mux)
	srv := httptest.NewServer(openapitest.Check(t, mux))
	t.Cleanup(srv.Close)
	count = func(tenant string) int {
		var n int
		require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook.endpoints WHERE tenant = $1`, tenant).Scan(&n))
		return n
	}
	return srv.URL, key, count
}

const capBody = `{"url":"http://127.0.0.1:9/h","events":["card.closed"]}`

// TestEndpointCapRefusesWith422: at the cap a create is a 422 problem that
// says the cap, how many exist and what to do, and stores nothing; a
// deleted endpoint frees its place.
func TestEndpointCapRefusesWith422(t *testing.T) {
	t.Parallel()
	url, key, count := cappedAPI(t, 2)
	var ids []string
	for range 2 {
		code, out := rawCall(t, url, key, http.MethodPost, "/v1/webhooks", capBody)
		require.Equal(t, http.StatusCreated, code, "%v", out)
		ids = append(ids, out["id"].(string))
	}
	code, out := rawCall(t, url, key, http.MethodPost, "/v1/webhooks", capBody)
	require.Equal(t, http.StatusUnprocessableEntity, code, "%v", out)
	require.Equal(t, "urn:eventline:problem:validation", out["type"])
	require.Equal(t, []string{"body"}, problemFields(out))
	msg := out["errors"].([]any)[0].(map[string]any)["message"].(string)
	require.Contains(t, msg, "at most 2 webhook endpoints")
	require.Contains(t, msg, "has 2")
	require.Contains(t, msg, "WEBHOOK_MAX_ENDPOINTS")
	require.Contains(t, msg, "DELETE /v1/webhooks/{id}")
	require.Equal(t, 2, count("acme"), "the refused create stored nothing")

	code, _ = request(t, url, key, http.MethodDelete, "/v1/webhooks/"+ids[0], nil)
	require.Equal(t, http.StatusNoContent, code)
	code, out = rawCall(t, url, key, http.MethodPost, "/v1/webhooks", capBody)
	require.Equal(t, http.StatusCreated, code, "a deleted endpoint does not count: %v", out)
}

// TestEndpointCapHoldsUnderConcurrentCreates: 20 creates at once against
// a cap of 5 create exactly 5; the others are refused with 422.
func TestEndpointCapHoldsUnderConcurrentCreates(t *testing.T) {
	t.Parallel()
	const limit, creates = 5, 20
	url, key, count := cappedAPI(t, limit)
	var wg sync.WaitGroup
	codes := make([]int, creates)
	start := make(chan struct{})
	for i := range creates {
		wg.Go(func() {
			<-start
			codes[i], _ = rawCall(t, url, key, http.MethodPost, "/v1/webhooks", capBody)
		})
	}
	close(start)
	wg.Wait()
	tally := map[int]int{}
	for _, c := range codes {
		tally[c]++
	}
	require.Equal(t, map[int]int{http.StatusCreated: limit, http.StatusUnprocessableEntity: creates - limit}, tally)
	require.Equal(t, limit, count("acme"))
}

// TestEndpointCapZeroIsNoCap: WEBHOOK_MAX_ENDPOINTS=0 creates without
// counting.
func TestEndpointCapZeroIsNoCap(t *testing.T) {
	t.Parallel()
	url, key, count := cappedAPI(t, 0)
	for range 3 {
		code, out := rawCall(t, url, key, http.MethodPost, "/v1/webhooks", capBody)
		require.Equal(t, http.StatusCreated, code, "%v", out)
	}
	require.Equal(t, 3, count("acme"))
}
