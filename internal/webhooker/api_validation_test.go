package webhooker

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/safehttp"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
)

// apiOnly serves the webhook API over a fresh database, without the
// delivery service: what input the API stores.
func apiOnly(t *testing.T) (url, key string) {
	t.Helper()
	pool := testenv.Pool(t)
	client, err := safehttp.New(safehttp.Config{AllowPrivate: true, Timeout: time.Second})
	require.NoError(t, err)
	keys := apikey.NewStore(pool, 0)
	_, key, err = keys.Create(context.Background(), apikey.CreateParams{Tenant: "acme", Scopes: []string{apikey.ScopeAdmin}})
	require.NoError(t, err)
	mux := http.NewServeMux()
	NewAPI(endpoint.NewStore(pool, testenv.Keyring(t)), delivery.NewLedger(pool, delivery.DisableRule{}, 0), keys, client, nil, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil))).Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, key
}

func rawCall(t *testing.T, url, key, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url+path, bytes.NewReader([]byte(body)))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out), "%s", raw)
	return resp.StatusCode, out
}

func problemFields(out map[string]any) []string {
	var fields []string
	errs, _ := out["errors"].([]any)
	for _, e := range errs {
		fields = append(fields, e.(map[string]any)["field"].(string))
	}
	return fields
}

// TestWebhookAPIRefusesWhatCannotBeStored: input Postgres cannot hold, or
// that encoding/json would silently rewrite, is a 422 naming the field,
// as on ingest; never a 503 and never stored changed.
func TestWebhookAPIRefusesWhatCannotBeStored(t *testing.T) {
	t.Parallel()
	url, key := apiOnly(t)
	const head = `{"url":"http://127.0.0.1:9/h","events":["card.closed"]`
	tests := []struct {
		name, body, field string
	}{
		{"description NUL", head + `,"description":"a\u0000b"}`, "description"},
		{"description invalid UTF-8", head + ",\"description\":\"\xff\xfe\"}", "description"},
		{"description lone surrogate", head + `,"description":"\ud800"}`, "description"},
		{"parent id NUL", head + `,"parents":[{"type":"board","id":"\u0000"}]}`, "parents[0].id"},
		{"parent id newline", head + `,"parents":[{"type":"board","id":"a\nb"}]}`, "parents[0].id"},
		{"parent id invalid UTF-8", head + ",\"parents\":[{\"type\":\"board\",\"id\":\"b\xff\"}]}", "parents[0].id"},
		{"parent id too long", head + `,"parents":[{"type":"board","id":"` + string(bytes.Repeat([]byte("é"), 129)) + `"}]}`, "parents[0].id"},
		{"parent id empty", head + `,"parents":[{"type":"board","id":""}]}`, "parents[0].id"},
		{"parent type", head + `,"parents":[{"type":"board","id":"b1"},{"type":"Board","id":"b1"}]}`, "parents[1].type"},
		{"url NUL", `{"url":"http://127.0.0.1:9/h\u0000x","events":["card.closed"]}`, "url"},
		{"url invalid UTF-8", "{\"url\":\"http://127.0.0.1:9/h\xff\",\"events\":[\"card.closed\"]}", "url"},
		{"event filter NUL", `{"url":"http://127.0.0.1:9/h","events":["card.closed\u0000"]}`, "events[0]"},
		{"rate limit out of numeric range", head + `,"rate_limit":1e999999}`, "rate_limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out := rawCall(t, url, key, http.MethodPost, "/v1/webhooks", tt.body)
			require.Equal(t, http.StatusUnprocessableEntity, code, "%v", out)
			require.Contains(t, problemFields(out), tt.field, "%v", out)
		})
	}
	code, out := rawCall(t, url, key, http.MethodGet, "/v1/webhooks", "")
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, out["webhooks"], "nothing was created")
}

func TestWebhookAPIStoresTextExactly(t *testing.T) {
	t.Parallel()
	url, key := apiOnly(t)
	code, out := rawCall(t, url, key, http.MethodPost, "/v1/webhooks",
		`{"url":"http://127.0.0.1:9/h","events":["card.closed"],"description":"Zoë's board\n\ud83c\udccf","parents":[{"type":"board","id":"карта €"}]}`)
	require.Equal(t, http.StatusCreated, code, "%v", out)
	id := out["id"].(string)
	code, out = rawCall(t, url, key, http.MethodGet, "/v1/webhooks/"+id, "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "Zoë's board\n🃏", out["description"])
	require.Equal(t, []any{map[string]any{"type": "board", "id": "карта €"}}, out["parents"])

	code, out = rawCall(t, url, key, http.MethodPatch, "/v1/webhooks/"+id, `{"description":"x\u0000"}`)
	require.Equal(t, http.StatusUnprocessableEntity, code)
	require.Equal(t, []string{"description"}, problemFields(out))
	_, out = rawCall(t, url, key, http.MethodGet, "/v1/webhooks/"+id, "")
	require.Equal(t, "Zoë's board\n🃏", out["description"], "a refused change changes nothing")
}
