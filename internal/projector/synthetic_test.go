package projector

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// loadSynthetic writes n events straight into generation 1 (90% tenant
// acme, the rest spread over 9 tenants; 100 boards, 10,000 objects per
// type, 1,000 users, 30 s apart from 2026-01-01) with their timeline
// entries, and analyzes the tables.
func loadSynthetic(t testing.TB, pool *pgxpool.Pool, n int) {
	t.Helper()
	ctx := context.Background()
	_, err := pool.Exec(ctx, fmt.Sprintf(`
		INSERT INTO timeline_g1.events (tenant, id, seq, type, action, eventable_type, eventable_id, creator_type, creator_id, parents, particulars, occurred_at, recorded_at)
		SELECT CASE WHEN i %% 10 = 0 THEN 'tenant' || (i %% 9) ELSE 'acme' END,
		       'e' || i, i,
		       et || '.' || act, act, et, et || (i %% 10000),
		       'user', 'u' || (i %% 1000),
		       jsonb_build_array(jsonb_build_object('type', 'board', 'id', 'b' || (i %% 100))),
		       '{}'::jsonb,
		       timestamptz '2026-01-01' + (i * interval '30 seconds'),
		       timestamptz '2026-01-01' + (i * interval '30 seconds')
		FROM generate_series(1, %d) AS i,
		     LATERAL (SELECT (ARRAY['card','comment','board','step','reaction'])[1 + i %% 5] AS et,
		                     (ARRAY['published','closed','moved','assigned','created','reopened','mentioned','deleted'])[1 + i %% 8] AS act) AS x`, n))
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `
		INSERT INTO timeline_g1.entries (tenant, object_type, object_id, occurred_at, seq, event_id, type, action, eventable_type, creator_type, creator_id)
		SELECT e.tenant, o.type, o.id, e.occurred_at, e.seq, e.id, e.type, e.action, e.eventable_type, e.creator_type, e.creator_id
		FROM timeline_g1.events e
		CROSS JOIN LATERAL (SELECT e.eventable_type AS type, e.eventable_id AS id
		                    UNION ALL SELECT p->>'type', p->>'id' FROM jsonb_array_elements(e.parents) p) o`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "ANALYZE timeline_g1.events; ANALYZE timeline_g1.entries")
	require.NoError(t, err)
}
