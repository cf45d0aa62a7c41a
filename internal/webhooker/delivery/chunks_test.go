package delivery

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestChunks: a shared fan-out is cut into chunks of at most the size
// asked for, once per event; a claim takes the oldest due chunks up to its
// limit and none another transaction holds; a chunk taken again after its
// claim ended is recorded first; renewals move only the owner's chunks;
// recording a chunk's deliveries deletes it.
func TestChunks(t *testing.T) {
	t.Parallel()
	e := newLedgerEnv(t, DisableRule{})
	now := e.t0
	ids := endpointIDs(5)
	n, err := e.l.Share(e.ctx, "acme", "e1", 7, ids, 2, now, false)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	n, err = e.l.Share(e.ctx, "acme", "e1", 7, ids, 2, now, true)
	require.NoError(t, err)
	require.Zero(t, n, "cut once per event")
	_, err = e.l.Share(e.ctx, "acme", "e2", 8, ids[:1], 2, now.Add(time.Second), true)
	require.NoError(t, err)

	// Another transaction holds the first chunk: the claim skips it.
	tx, err := e.pool.Begin(e.ctx)
	require.NoError(t, err)
	_, err = tx.Exec(e.ctx, `SELECT 1 FROM webhook.chunks WHERE event_id = 'e1' AND n = 0 FOR UPDATE`)
	require.NoError(t, err)
	_, got, err := e.l.ClaimDue(e.ctx, now, now.Add(time.Minute), "me", 0, 2)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(e.ctx))
	require.Len(t, got, 2)
	require.Equal(t, []string{"ep2", "ep3"}, got[0].EndpointIDs)
	require.Equal(t, []string{"ep4"}, got[1].EndpointIDs)
	for _, c := range got {
		require.Equal(t, Chunk{ID: c.ID, Tenant: "acme", EventID: "e1", Seq: 7, EndpointIDs: c.EndpointIDs}, c, "first taken: attempted first")
	}
	_, none, err := e.l.ClaimDue(e.ctx, now, now.Add(time.Minute), "other", 0, 10)
	require.NoError(t, err)
	require.Len(t, none, 1, "the held chunk; the claimed ones and the one due later are not due")
	require.Equal(t, []string{"ep0", "ep1"}, none[0].EndpointIDs)

	// Renewals move the owner's chunks only.
	_, err = e.l.Renew(e.ctx, Renewal{Chunks: []int64{got[0].ID, none[0].ID}, Now: now, Until: now.Add(2 * time.Minute), Owner: "me"})
	require.NoError(t, err)
	dueAt := func(id int64) time.Time {
		var at time.Time
		require.NoError(t, e.pool.QueryRow(e.ctx, `SELECT due_at FROM webhook.chunks WHERE id = $1`, id).Scan(&at))
		return at
	}
	require.True(t, dueAt(got[0].ID).Equal(now.Add(2*time.Minute)), "renewed")
	require.True(t, dueAt(got[1].ID).Equal(now.Add(time.Minute)), "not asked")
	require.True(t, dueAt(none[0].ID).Equal(now.Add(time.Minute)), "another replica's")

	// The claim on the second ended: taken again, it is recorded first.
	_, again, err := e.l.ClaimDue(e.ctx, now.Add(90*time.Second), now.Add(3*time.Minute), "other", 0, 10)
	require.NoError(t, err)
	require.Len(t, again, 3, "the chunk of e2, the unrenewed chunk and the other's own")
	for _, c := range again {
		switch c.ID {
		case got[1].ID:
			require.True(t, c.RecordFirst)
			require.Equal(t, "me", c.ClaimedBy)
		case none[0].ID:
			require.True(t, c.RecordFirst, "taken before, even by the same replica")
		default:
			require.Equal(t, "e2", c.EventID)
			require.True(t, c.RecordFirst, "cut from a redelivery")
			require.Empty(t, c.ClaimedBy)
		}
	}

	// Recording the chunk's deliveries deletes it, in the same statement.
	jobs := []Job{e.job("e1", "ep2"), e.job("e1", "ep3")}
	_, _, err = e.l.Record(e.ctx, []Item{{Jobs: jobs, Chunk: got[0].ID}}, now, now.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, 3, e.count(`SELECT count(*) FROM webhook.chunks`))
	require.Zero(t, e.count(fmt.Sprintf(`SELECT count(*) FROM webhook.chunks WHERE id = %d`, got[0].ID)))
	require.NoError(t, e.l.DropChunk(e.ctx, got[1].ID))
	require.Equal(t, 2, e.count(`SELECT count(*) FROM webhook.chunks`))
}

// TestChunksTakenInTurnByTenant: a claim takes each tenant's oldest chunk
// in turn, so a tenant's fan-out cut later is not held back until an
// earlier tenant's large one has drained.
func TestChunksTakenInTurnByTenant(t *testing.T) {
	t.Parallel()
	e := newLedgerEnv(t, DisableRule{})
	now := e.t0
	ids := endpointIDs(10)
	_, err := e.l.Share(e.ctx, "big", "e1", 1, ids, 2, now, false) // 5 chunks
	require.NoError(t, err)
	_, err = e.l.Share(e.ctx, "small", "e2", 2, ids[:4], 2, now.Add(time.Second), false) // 2 chunks, cut later
	require.NoError(t, err)
	var claims [][]string // the tenants of each claim's chunks, sorted
	for range 4 {
		_, got, err := e.l.ClaimDue(e.ctx, now.Add(2*time.Second), now.Add(time.Minute), "me", 0, 2)
		require.NoError(t, err)
		var tenants []string
		for _, c := range got {
			tenants = append(tenants, c.Tenant)
		}
		slices.Sort(tenants)
		claims = append(claims, tenants)
	}
	require.Equal(t, [][]string{{"big", "small"}, {"big", "small"}, {"big", "big"}, {"big"}}, claims)
}

// endpointIDs is n endpoint ids: ep0, ep1...
func endpointIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("ep%d", i)
	}
	return ids
}
