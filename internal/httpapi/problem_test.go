package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/httpapi"
)

func TestProblemIsReadableJSON(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	httpapi.Error(rec, http.StatusUnauthorized, "send 'Authorization: Bearer <key>' & retry")
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	require.JSONEq(t, `{"type":"about:blank","title":"Unauthorized","status":401,"detail":"send 'Authorization: Bearer <key>' & retry"}`, rec.Body.String())
	require.Contains(t, rec.Body.String(), "<key>", "not HTML-escaped")
}
