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

func TestFallbackAnswers404And405AsProblems(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.Handle("GET /v1/things/{id}", ok)
	mux.Handle("DELETE /v1/things/{id}", ok)
	mux.Handle("/", httpapi.Fallback(mux))
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{http.MethodGet, "/v1/things/1", http.StatusNoContent, ""},
		{http.MethodPost, "/v1/things/1", http.StatusMethodNotAllowed, "GET, DELETE"},
		{http.MethodGet, "/v1/nothing", http.StatusNotFound, ""},
		{http.MethodGet, "/v1/things/1/", http.StatusNotFound, ""},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		require.Equal(t, tc.status, rec.Code, "%s %s", tc.method, tc.path)
		require.Equal(t, tc.allow, rec.Header().Get("Allow"), "%s %s", tc.method, tc.path)
		if tc.status >= 400 {
			require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"), "%s %s", tc.method, tc.path)
		}
	}
}
