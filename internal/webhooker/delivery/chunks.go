package delivery

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Chunk is part of a shared fan-out (webhook.chunks): the endpoints of one
// event that one replica attempts and records together, as a fan-out that
// is not shared (docs/architecture.md §15).
type Chunk struct {
	ID          int64
	Tenant      string
	EventID     string
	Seq         int64
	EndpointIDs []string
	// RecordFirst: its deliveries are recorded before they are attempted,
	// and only those that did not exist are attempted — it was taken
	// before (a claim ended) or cut from a message delivered again.
	RecordFirst bool
	ClaimedBy   string // the replica whose claim on it ended; "" when none
}

// Share cuts the fan-out of one event to endpointIDs into chunks of at most
// size endpoints, due at now for any replica (ClaimDue), and returns
// how many chunks it recorded. A chunk the event has already (its message
// was delivered again) is left as it is; recordFirst marks the new ones
// to be recorded before they are attempted.
func (l *Ledger) Share(ctx context.Context, tenant, eventID string, seq int64, endpointIDs []string, size int, now time.Time, recordFirst bool) (int, error) {
	tag, err := l.pool.Exec(ctx, `INSERT INTO webhook.chunks (tenant, event_id, event_seq, n, endpoint_ids, due_at, record_first)
		SELECT $1, $2, $3, (i - 1) / $5, array_agg(id ORDER BY i), $6, $7 FROM unnest($4::text[]) WITH ORDINALITY AS x(id, i)
		GROUP BY (i - 1) / $5
		ON CONFLICT (tenant, event_id, n) DO NOTHING`, tenant, eventID, seq, endpointIDs, size, now, recordFirst)
	if err != nil {
		return 0, fmt.Errorf("share fan-out: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// claimChunksSQL claims for $3, until $2, at most $4 chunks due at $1,
// with FOR UPDATE SKIP LOCKED so replicas never take the same one (ClaimDue):
// each tenant's oldest first, in turn (the tenants' first chunks, oldest
// first, then their second ones...), so a tenant's large fan-out does not
// hold back another tenant's until it has drained. A chunk another replica
// took before is marked to be recorded first.
const claimChunksSQL = `WITH ranked AS (
		SELECT id, row_number() OVER (PARTITION BY tenant ORDER BY due_at, id) AS turn FROM webhook.chunks WHERE due_at <= $1
	), old AS (
		SELECT c.id, c.claimed_by FROM webhook.chunks c JOIN ranked r ON r.id = c.id
		ORDER BY r.turn, c.due_at, c.id LIMIT $4 FOR UPDATE OF c SKIP LOCKED
	)
	UPDATE webhook.chunks c SET due_at = $2, claimed_by = $3, record_first = c.record_first OR old.claimed_by IS NOT NULL
	FROM old WHERE c.id = old.id
	RETURNING c.id, c.tenant, c.event_id, c.event_seq, c.endpoint_ids, c.record_first, coalesce(old.claimed_by, '')`

func scanChunk(r pgx.CollectableRow) (Chunk, error) {
	var c Chunk
	err := r.Scan(&c.ID, &c.Tenant, &c.EventID, &c.Seq, &c.EndpointIDs, &c.RecordFirst, &c.ClaimedBy)
	return c, err
}

// DropChunk deletes a chunk that cannot be worked on (its event is gone
// from the stream): nothing would ever deliver it.
func (l *Ledger) DropChunk(ctx context.Context, id int64) error {
	if _, err := l.pool.Exec(ctx, `DELETE FROM webhook.chunks WHERE id = $1`, id); err != nil {
		return fmt.Errorf("drop chunk: %w", err)
	}
	return nil
}
