package projector

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/testenv"
)

// TestAPIRunsUnderRowLevelSecurity: timeline reads go through the
// application role's policies. Restrictive policies added for
// eventline_app hide one of the tenant's events; the API, asked for that
// tenant and that id, does not return it, which it would as the owner.
// After a rebuild-style switch to a new generation the same holds.
func TestAPIRunsUnderRowLevelSecurity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Pool(t)
	keys := apikey.NewStore(pool, 0)
	_, key, err := keys.Create(ctx, apikey.CreateParams{Tenant: "acme", Scopes: []string{apikey.ScopeRead}})
	require.NoError(t, err)
	mux := http.NewServeMux()
	NewAPI(NewStore(pool), keys, testLogger()).Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	get := func(path string) (int, map[string]any) {
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return resp.StatusCode, out
	}
	ids := func(out map[string]any) []string {
		var s []string
		for _, e := range out["events"].([]any) {
			s = append(s, e.(map[string]any)["id"].(string))
		}
		return s
	}
	for g := 1; g <= 2; g++ {
		sch := schema(g)
		if g == 2 {
			_, err := pool.Exec(ctx, "SELECT timeline.create_generation(2)")
			require.NoError(t, err)
		}
		for _, sql := range []string{
			`INSERT INTO ` + sch + `.events (tenant, id, seq, type, action, eventable_type, eventable_id, creator_type, creator_id, parents, particulars, occurred_at, recorded_at)
				VALUES ('acme', 'visible', 1, 'card.closed', 'closed', 'card', 'c1', 'user', 'u1', '[{"type":"board","id":"b1"}]', '{}', now(), now()),
				       ('acme', 'hidden', 2, 'card.closed', 'closed', 'card', 'c1', 'user', 'u1', '[{"type":"board","id":"b1"}]', '{}', now(), now())`,
			`INSERT INTO ` + sch + `.entries (tenant, object_type, object_id, occurred_at, seq, event_id, type, action, eventable_type, creator_type, creator_id)
				SELECT tenant, 'board', 'b1', occurred_at, seq, id, type, action, eventable_type, creator_type, creator_id FROM ` + sch + `.events`,
			`CREATE POLICY probe ON ` + sch + `.events AS RESTRICTIVE TO eventline_app USING (id <> 'hidden')`,
			`CREATE POLICY probe ON ` + sch + `.entries AS RESTRICTIVE TO eventline_app USING (event_id <> 'hidden')`,
			`UPDATE timeline.current SET generation = ` + strconv.Itoa(g),
		} {
			_, err := pool.Exec(ctx, sql)
			require.NoError(t, err)
		}
		code, _ := get("/v1/events/hidden")
		require.Equal(t, http.StatusNotFound, code, "generation %d: the policy hides the event from the API", g)
		code, _ = get("/v1/events/visible")
		require.Equal(t, http.StatusOK, code)
		code, out := get("/v1/activity")
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, []string{"visible"}, ids(out), "generation %d", g)
		code, out = get("/v1/timelines/board/b1")
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, []string{"visible"}, ids(out), "generation %d", g)
	}
	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM timeline_g2.events WHERE tenant = 'acme'").Scan(&n))
	require.Equal(t, 2, n, "the owner sees both")
}
