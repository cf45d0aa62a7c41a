package notifier

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func problemFields(out map[string]any) []string {
	var fields []string
	errs, _ := out["errors"].([]any)
	for _, e := range errs {
		m := e.(map[string]any)
		fields = append(fields, m["field"].(string))
	}
	return fields
}

// TestWriteAPIsRefuseWhatCannotBeStored: preferences, rules and watches
// refuse, with a 422 naming the field, input the database cannot hold or
// that encoding/json would silently rewrite (invalid UTF-8 and lone
// surrogates become U+FFFD), by the same check as ingest.
func TestWriteAPIsRefuseWhatCannotBeStored(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	tests := []struct {
		name, key, method, path, body string
		field                         string
		index                         int
	}{
		{"email invalid UTF-8", "acme-ingest", "PUT", "/v1/users/u1/preferences", "{\"email\":\"\xff@b.c\"}", "email", 0},
		{"email NUL", "acme-ingest", "PUT", "/v1/users/u1/preferences", `{"email":"a\u0000@b.c"}`, "email", 0},
		{"email lone surrogate", "acme-ingest", "PUT", "/v1/users/u1/preferences", `{"email":"\udfff@b.c"}`, "email", 0},
		{"timezone NUL", "acme-ingest", "PUT", "/v1/users/u1/preferences", `{"timezone":"UTC\u0000"}`, "timezone", 0},
		{"timezone invalid UTF-8", "acme-ingest", "PUT", "/v1/users/u1/preferences", "{\"timezone\":\"Europe/Par\xc3s\"}", "timezone", 0},
		{"preferences user id invalid UTF-8", "acme-ingest", "PUT", "/v1/users/%FF/preferences", `{"digest":"daily"}`, "user_id", 0},
		{"preferences user id control", "acme-ingest", "PUT", "/v1/users/a%0Ab/preferences", `{"digest":"daily"}`, "user_id", 0},
		{"rule user field NUL", "acme-admin", "PUT", "/v1/notification-rules", `{"rules":[{"event":"card.closed","notify":{"watchers_of":["eventable"]}},{"event":"card.closed","notify":{"user_ids_in":["a\u0000"]}}]}`, "notify.user_ids_in[0]", 1},
		{"rule lone surrogate", "acme-admin", "PUT", "/v1/notification-rules", `{"rules":[{"event":"card.\ud800","notify":{"watchers_of":["eventable"]}}]}`, "event", 0},
		{"rule invalid UTF-8", "acme-admin", "PUT", "/v1/notification-rules", "{\"rules\":[{\"event\":\"card.closed\",\"group\":\"\xff\",\"notify\":{\"watchers_of\":[\"eventable\"]}}]}", "group", 0},
		{"watch object id invalid UTF-8", "acme-ingest", "PUT", "/v1/watches/card/%FF/users/u1", "", "id", 0},
		{"watch object id lone surrogate (CESU)", "acme-ingest", "PUT", "/v1/watches/card/%ED%A0%80/users/u1", "", "id", 0},
		{"watch object id NUL", "acme-ingest", "PUT", "/v1/watches/card/a%00b/users/u1", "", "id", 0},
		{"watch object id too long", "acme-ingest", "PUT", "/v1/watches/card/" + strings.Repeat("%C3%A9", 129) + "/users/u1", "", "id", 0},
		{"watch object type", "acme-ingest", "PUT", "/v1/watches/Card/c1/users/u1", "", "type", 0},
		{"watch user id invalid UTF-8", "acme-ingest", "PUT", "/v1/watches/card/c1/users/%FF", "", "user_id", 0},
		{"unwatch user id control", "acme-ingest", "DELETE", "/v1/watches/card/c1/users/a%0Db", "", "user_id", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var body any
			if tt.body != "" {
				body = []byte(tt.body)
			}
			code, out := b.call(t, tt.key, tt.method, tt.path, body)
			require.Equal(t, http.StatusUnprocessableEntity, code, "%v", out)
			require.Contains(t, problemFields(out), tt.field, "%v", out)
			errs := out["errors"].([]any)
			require.EqualValues(t, tt.index, errs[0].(map[string]any)["index"])
		})
	}
	code, out := b.call(t, "acme-read", "GET", "/v1/users/u1/preferences", nil)
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, out["email"], "nothing was stored")
	code, out = b.call(t, "acme-read", "GET", "/v1/users/u1/watches", nil)
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, out["watches"], "nothing was stored")
}

func TestWriteAPIsStoreTextExactly(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	code, out := b.call(t, "acme-ingest", "PUT", "/v1/watches/card/%D0%BA%D0%B0%D1%80%D1%82%D0%B0%20%E2%82%AC/users/z%C3%B6e", nil)
	require.Equal(t, http.StatusOK, code, "%v", out)
	code, out = b.call(t, "acme-read", "GET", "/v1/users/z%C3%B6e/watches", nil)
	require.Equal(t, http.StatusOK, code)
	ws := out["watches"].([]any)
	require.Len(t, ws, 1)
	require.Equal(t, map[string]any{"type": "card", "id": "карта €"}, ws[0].(map[string]any)["object"])

	code, out = b.call(t, "acme-ingest", "PUT", "/v1/users/z%C3%B6e/preferences", []byte(`{"email":"zo\u00eb@example.com","timezone":"Europe/Paris"}`))
	require.Equal(t, http.StatusOK, code, "%v", out)
	require.Equal(t, "zoë@example.com", out["email"])
}
