package endpoint

import (
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/testenv"
)

// TestRegistrySeesChangesCommittedOutOfOrder: an endpoint whose
// transaction took its change_seq first but committed after another's is
// still seen by a registry that already read the other one.
func TestRegistrySeesChangesCommittedOutOfOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := postgres.Open(ctx, testenv.Database(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	r := NewRegistry(NewStore(pool, testenv.Keyring(t)), 0, slog.Default())
	require.NoError(t, r.Refresh(ctx))
	const insert = `INSERT INTO webhook.endpoints (tenant, id, url, events, secrets) VALUES ('acme', $1, 'https://example.com/' || $1, '{card.*}', '[]')`

	slow, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = slow.Rollback(ctx) }()
	_, err = slow.Exec(ctx, insert, "ep-slow") // takes its change_seq first
	require.NoError(t, err)
	_, err = pool.Exec(ctx, insert, "ep-fast") // a later change_seq, committed first
	require.NoError(t, err)
	require.NoError(t, r.Refresh(ctx))
	_, ok := r.Get("ep-fast")
	require.True(t, ok, "the committed endpoint is seen")
	_, ok = r.Get("ep-slow")
	require.False(t, ok, "the uncommitted one is not")

	require.NoError(t, slow.Commit(ctx))
	require.NoError(t, r.Refresh(ctx))
	_, ok = r.Get("ep-slow")
	require.True(t, ok, "an endpoint committed after a later change_seq is seen on the next refresh")

	_, err = pool.Exec(ctx, `UPDATE webhook.endpoints SET enabled = false, change_seq = nextval('webhook.endpoint_changes') WHERE id = 'ep-slow'`)
	require.NoError(t, err)
	require.NoError(t, r.Refresh(ctx))
	e, ok := r.Get("ep-slow")
	require.True(t, ok)
	require.False(t, e.Enabled, "a change made by a later transaction is seen")
	require.Equal(t, 2, r.Len())
}
