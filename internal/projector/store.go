package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/pkg/events"
)

// Store writes projected events into a timeline generation and reads
// timelines back. Every query names its tenant.
type Store struct {
	pool *pgxpool.Pool
	// generation is the timeline generation reads last found current (0:
	// not known yet).
	generation atomic.Int64
}

// NewStore returns a Store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// schema names the tables of generation g.
func schema(g int) string { return fmt.Sprintf("timeline_g%d", g) }

// CurrentGeneration returns the generation that serves reads.
func (s *Store) CurrentGeneration(ctx context.Context) (int, error) {
	return currentGeneration(ctx, s.pool)
}

func currentGeneration(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int, error) {
	var g int
	if err := q.QueryRow(ctx, `SELECT generation FROM timeline.current`).Scan(&g); err != nil {
		return 0, fmt.Errorf("read current timeline generation: %w", err)
	}
	return g, nil
}

// lockGeneration returns the generation a live batch writes to, holding a
// share lock on it until tx ends so a rebuild cannot switch generations
// under a committing batch.
func lockGeneration(ctx context.Context, tx pgx.Tx) (int, error) {
	var g int
	if err := tx.QueryRow(ctx, `SELECT generation FROM timeline.current FOR SHARE`).Scan(&g); err != nil {
		return 0, fmt.Errorf("lock current timeline generation: %w", err)
	}
	return g, nil
}

// insertSQL inserts a batch given as parallel arrays. Events already stored
// (same tenant and id) are skipped, and only newly stored events get their
// timeline entries: one per object, the eventable and each parent.
const insertSQL = `
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::text[]::jsonb[], $11::text[]::jsonb[], $12::timestamptz[], $13::timestamptz[])
        AS t(tenant, id, seq, type, action, eventable_type, eventable_id, creator_type, creator_id, parents, particulars, occurred_at, recorded_at)
), stored AS (
    INSERT INTO %[1]s.events (tenant, id, seq, type, action, eventable_type, eventable_id, creator_type, creator_id, parents, particulars, occurred_at, recorded_at)
    SELECT * FROM input
    ON CONFLICT (tenant, id) DO NOTHING
    RETURNING tenant, id, seq, type, action, eventable_type, eventable_id, creator_type, creator_id, parents, occurred_at
), entries AS (
    INSERT INTO %[1]s.entries (tenant, object_type, object_id, occurred_at, seq, event_id, type, action, eventable_type, creator_type, creator_id)
    SELECT DISTINCT s.tenant, o.type, o.id, s.occurred_at, s.seq, s.id, s.type, s.action, s.eventable_type, s.creator_type, s.creator_id
    FROM stored s
    CROSS JOIN LATERAL (
        SELECT s.eventable_type AS type, s.eventable_id AS id
        UNION ALL
        SELECT p->>'type', p->>'id' FROM jsonb_array_elements(s.parents) AS p
    ) AS o
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM stored`

// insertArgs are the parallel arrays of insertSQL for es (not empty).
func insertArgs(es []events.Event) ([]any, error) {
	n := len(es)
	var (
		tenant, id, typ, action, eType, eID, cType, cID = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		parents, particulars                            = make([]string, n), make([]string, n)
		seq                                             = make([]int64, n)
		occurred, recorded                              = make([]time.Time, n), make([]time.Time, n)
	)
	for i, e := range es {
		tenant[i], id[i], seq[i], typ[i], action[i] = e.Tenant, e.ID, int64(e.Seq), e.Type, e.Action
		eType[i], eID[i], cType[i], cID[i] = e.Eventable.Type, e.Eventable.ID, e.Creator.Type, e.Creator.ID
		ps := e.Parents
		if ps == nil {
			ps = []events.Ref{}
		}
		pj, err := json.Marshal(ps)
		if err != nil {
			return nil, fmt.Errorf("encode parents of %s: %w", e.ID, err)
		}
		parents[i], particulars[i] = string(pj), string(e.Particulars)
		occurred[i], recorded[i] = e.OccurredAt, e.RecordedAt
	}
	return []any{tenant, id, seq, typ, action, eType, eID, cType, cID, parents, particulars, occurred, recorded}, nil
}

// insertEvents stores es into generation g inside tx and returns how many
// were new.
func insertEvents(ctx context.Context, tx pgx.Tx, g int, es []events.Event) (int, error) {
	if len(es) == 0 {
		return 0, nil
	}
	args, err := insertArgs(es)
	if err != nil {
		return 0, err
	}
	var stored int
	if err := tx.QueryRow(ctx, fmt.Sprintf(insertSQL, schema(g)), args...).Scan(&stored); err != nil {
		return 0, fmt.Errorf("insert %d events into %s: %w", len(es), schema(g), err)
	}
	return stored, nil
}

// progressSQL moves a consumer's checkpoint in generation %s to at least $2.
const progressSQL = `INSERT INTO %s.progress (consumer, last_seq) VALUES ($1, $2)
		ON CONFLICT (consumer) DO UPDATE SET last_seq = GREATEST(progress.last_seq, excluded.last_seq), updated_at = now()`

// recordProgress moves the consumer's checkpoint to at least seq.
func recordProgress(ctx context.Context, tx pgx.Tx, g int, consumer string, seq uint64) error {
	_, err := tx.Exec(ctx, fmt.Sprintf(progressSQL, schema(g)), consumer, int64(seq))
	if err != nil {
		return fmt.Errorf("record progress: %w", err)
	}
	return nil
}
