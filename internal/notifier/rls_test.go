package notifier

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/testenv"
)

// TestAPIRunsUnderRowLevelSecurity: the notification API reads and writes
// through the application role's policies. Restrictive policies added for
// eventline_app hide some of the tenant's rows; the API, asked for that
// tenant and those users, neither returns nor changes them, which it would
// as the owner. The owner (the consumer's and the digest sender's path)
// still sees them.
func TestAPIRunsUnderRowLevelSecurity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Pool(t)
	keys := apikey.NewStore(pool, 0)
	key := map[string]string{}
	for _, scope := range []string{apikey.ScopeRead, apikey.ScopeIngest, apikey.ScopeAdmin} {
		_, k, err := keys.Create(ctx, apikey.CreateParams{Tenant: "acme", Scopes: []string{scope}})
		require.NoError(t, err)
		key[scope] = k
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mux := http.NewServeMux()
	NewAPI(NewStore(pool, nil), NewHub(pool, nil, log), keys, secret, 0, log).Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	call := func(scope, method, path, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		if scope != "" {
			req.Header.Set("Authorization", "Bearer "+key[scope])
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	for _, sql := range []string{
		`INSERT INTO notify.notifications (tenant, user_id, group_type, group_id, unread_count, last_event, created_at, updated_at, change_seq) VALUES
			('acme', 'u1', 'card', 'c-visible', 1, '{}', now(), now(), 2),
			('acme', 'u1', 'card', 'c-hidden', 2, '{}', now(), now() - interval '1 second', 1)`,
		`INSERT INTO notify.inboxes (tenant, user_id, seq, unread_total) VALUES ('acme', 'u1', 2, 2)`,
		`INSERT INTO notify.watches (tenant, object_type, object_id, user_id) VALUES
			('acme', 'card', 'c-visible', 'u1'), ('acme', 'card', 'c-hidden', 'u1')`,
		`INSERT INTO notify.preferences (tenant, user_id, email, digest) VALUES
			('acme', 'u1', 'u1@example.com', 'daily'), ('acme', 'u-hidden', 'hidden@example.com', 'weekly')`,
		`INSERT INTO notify.rules (tenant, rules) VALUES ('acme', '[]')`,
		`CREATE POLICY probe ON notify.notifications AS RESTRICTIVE TO eventline_app USING (group_id <> 'c-hidden')`,
		`CREATE POLICY probe ON notify.watches AS RESTRICTIVE TO eventline_app USING (object_id <> 'c-hidden')`,
		`CREATE POLICY probe ON notify.preferences AS RESTRICTIVE TO eventline_app USING (user_id <> 'u-hidden')`,
		`CREATE POLICY probe ON notify.rules AS RESTRICTIVE TO eventline_app USING (false)`,
	} {
		_, err := pool.Exec(ctx, sql)
		require.NoError(t, err)
	}
	var hiddenID int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT id FROM notify.notifications WHERE group_id = 'c-hidden'`).Scan(&hiddenID))

	// Inbox list and unread total.
	code, out := call(apikey.ScopeRead, http.MethodGet, "/v1/users/u1/notifications", "")
	require.Equal(t, http.StatusOK, code, "%v", out)
	ns := out["notifications"].([]any)
	require.Len(t, ns, 1, "the policy hides the notification from the API")
	require.Equal(t, "c-visible", ns[0].(map[string]any)["group"].(map[string]any)["id"])
	require.EqualValues(t, 1, out["unread_total"], "and from the unread total")
	// The event stream's catch-up after a reconnect (from an inbox
	// sequence, and from an id of the older form): oldest first, so
	// c-hidden would come first.
	for _, last := range []string{"0", "0-0"} {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		req, err := http.NewRequestWithContext(sctx, http.MethodGet, srv.URL+"/v1/users/u1/notifications/stream", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key[apikey.ScopeRead])
		req.Header.Set("Last-Event-ID", last)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		lines := bufio.NewScanner(resp.Body)
		var data string
		for data == "" && lines.Scan() {
			if d, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
				data = d
			}
		}
		require.Contains(t, data, `"c-visible"`, "the first change caught up from %s is the visible one", last)
		cancel()
		resp.Body.Close()
	}
	// Marking read.
	code, _ = call(apikey.ScopeRead, http.MethodPost, "/v1/users/u1/notifications/"+strconv.FormatInt(hiddenID, 10)+"/read", "")
	require.Equal(t, http.StatusNotFound, code)
	code, out = call(apikey.ScopeRead, http.MethodPost, "/v1/users/u1/notifications/read-all", "")
	require.Equal(t, http.StatusOK, code, "%v", out)
	require.EqualValues(t, 1, out["marked_read"])
	// Watches.
	code, out = call(apikey.ScopeRead, http.MethodGet, "/v1/users/u1/watches", "")
	require.Equal(t, http.StatusOK, code, "%v", out)
	ws := out["watches"].([]any)
	require.Len(t, ws, 1)
	require.Equal(t, "c-visible", ws[0].(map[string]any)["object"].(map[string]any)["id"])
	code, _ = call(apikey.ScopeIngest, http.MethodDelete, "/v1/watches/card/c-hidden/users/u1", "")
	require.Equal(t, http.StatusNoContent, code)
	// Preferences.
	code, out = call(apikey.ScopeRead, http.MethodGet, "/v1/users/u1/preferences", "")
	require.Equal(t, http.StatusOK, code, "%v", out)
	require.Equal(t, map[string]any{"email": "u1@example.com", "digest": "daily", "timezone": "UTC"}, out)
	code, out = call(apikey.ScopeRead, http.MethodGet, "/v1/users/u-hidden/preferences", "")
	require.Equal(t, http.StatusOK, code, "%v", out)
	require.Equal(t, map[string]any{"email": "", "digest": "every_few_hours", "timezone": "UTC"}, out, "hidden: the defaults")
	code, _ = call(apikey.ScopeIngest, http.MethodPut, "/v1/users/u-hidden/preferences", `{"email": "new@example.com"}`)
	require.Equal(t, http.StatusServiceUnavailable, code, "the upsert may not touch a row the policy hides")
	code, _ = call("", http.MethodPost, "/v1/unsubscribe/"+unsubscribeToken(secret, "acme", "u-hidden"), "")
	require.Equal(t, http.StatusServiceUnavailable, code, "unsubscribing runs as the token's tenant too")
	// Rules.
	code, out = call(apikey.ScopeRead, http.MethodGet, "/v1/notification-rules", "")
	require.Equal(t, http.StatusOK, code, "%v", out)
	require.Equal(t, true, out["is_default"], "the stored rules are hidden")
	code, _ = call(apikey.ScopeAdmin, http.MethodDelete, "/v1/notification-rules", "")
	require.Equal(t, http.StatusOK, code)

	// The owner still sees every row, unchanged by the API.
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM notify.notifications WHERE group_id = 'c-hidden' AND read_at IS NULL AND unread_count = 2`).Scan(&n))
	require.Equal(t, 1, n)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM notify.watches WHERE object_id = 'c-hidden'`).Scan(&n))
	require.Equal(t, 1, n)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM notify.preferences WHERE user_id = 'u-hidden' AND email = 'hidden@example.com' AND digest = 'weekly'`).Scan(&n))
	require.Equal(t, 1, n)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM notify.rules WHERE tenant = 'acme'`).Scan(&n))
	require.Equal(t, 1, n)
}
