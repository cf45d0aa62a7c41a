package delivery

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/internal/postgres"
)

// List returns an endpoint's deliveries, newest first, with every
// attempt; status filters when set. It runs as the tenant under row-level
// security, and only reads.
func (l *Ledger) List(ctx context.Context, tenant, endpointID, status, after string, limit int) (out []Delivery, err error) {
	// One snapshot for deliveries and attempts, so they agree.
	err = postgres.TenantTxOptions(ctx, l.pool, tenant, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		out, err = listDeliveries(ctx, tx, tenant, endpointID, status, after, limit)
		return err
	})
	return out, err
}

func listDeliveries(ctx context.Context, tx pgx.Tx, tenant, endpointID, status, after string, limit int) ([]Delivery, error) {
	rows, err := tx.Query(ctx, `SELECT id, endpoint_id, event_id, event_seq, event_type, status, attempts, next_attempt_at, created_at
		FROM webhook.deliveries
		WHERE tenant = $1 AND endpoint_id = $2 AND ($3 = '' OR status = $3) AND ($4 = '' OR id < $4)
		ORDER BY id DESC LIMIT $5`, tenant, endpointID, status, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) {
		var d Delivery
		var seq int64
		err := r.Scan(&d.ID, &d.EndpointID, &d.EventID, &seq, &d.EventType, &d.Status, &d.n, &d.NextAttemptAt, &d.CreatedAt)
		d.EventSeq = uint64(seq)
		if d.Status != StatusPending {
			d.NextAttemptAt = nil
		}
		d.Attempts = []Attempt{}
		return d, err
	})
	if err != nil || len(ds) == 0 {
		return ds, err
	}
	ids := make([]string, len(ds))
	index := map[string]int{}
	for i, d := range ds {
		ids[i] = d.ID
		index[d.ID] = i
	}
	rows, err = tx.Query(ctx, `SELECT delivery_id, n, at, duration_ms, coalesce(status_code, 0), coalesce(error_class, ''), coalesce(error, ''), coalesce(response, '')
		FROM webhook.attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, n`, ids)
	if err != nil {
		return nil, fmt.Errorf("list attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var a Attempt
		if err := rows.Scan(&id, &a.N, &a.At, &a.DurationMS, &a.StatusCode, &a.ErrorClass, &a.Error, &a.Response); err != nil {
			return nil, err
		}
		ds[index[id]].Attempts = append(ds[index[id]].Attempts, a)
	}
	return ds, rows.Err()
}
