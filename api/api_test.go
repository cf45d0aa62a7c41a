package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/api"
	"github.com/eventline/eventline/internal/openapitest"
)

// The description is a valid OpenAPI 3.1 document (the validator checks it
// against the specification's schema when it loads).
func TestDocumentIsValidOpenAPI(t *testing.T) {
	openapitest.Validator(t)
	var doc struct {
		OpenAPI string `json:"openapi"`
	}
	body, err := api.Document()
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(body, &doc))
	require.Equal(t, "3.1.0", doc.OpenAPI)
}

// operations lists "method path" of a served document with each x-service.
func operations(t *testing.T, body []byte) map[string]string {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(body, &doc))
	ops := map[string]string{}
	for path, item := range doc.Paths {
		for method, raw := range item {
			var op struct {
				Service string `json:"x-service"`
			}
			if method == "parameters" {
				continue
			}
			require.NoError(t, json.Unmarshal(raw, &op))
			ops[method+" "+path] = op.Service
		}
	}
	return ops
}

// Each service serves its own operations and those every service answers;
// the whole document is the union.
func TestHandlerServesTheServicesOperations(t *testing.T) {
	whole, err := api.Document()
	require.NoError(t, err)
	all := operations(t, whole)
	union := map[string]string{}
	for _, svc := range []string{api.Ingest, api.Projector, api.Notifier, api.Webhooker, api.Admin} {
		rec := httptest.NewRecorder()
		api.Handler(svc).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
		require.Equal(t, http.StatusOK, rec.Code)
		require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		ops := operations(t, rec.Body.Bytes())
		require.NotEmpty(t, ops, svc)
		for op, s := range ops {
			require.Contains(t, []string{svc, api.All}, s, "%s served by %s", op, svc)
			union[op] = s
		}
	}
	require.Equal(t, all, union)
	require.Equal(t, api.Ingest, all["post /v1/events"])
	require.Equal(t, api.Webhooker, all["post /v1/webhooks"])
}
