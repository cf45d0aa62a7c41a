package webhooker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgRateWindows keeps slot budgets in webhook.rate_windows: the
// dispatcher's shared rate limits (attempt.RateWindows).
type pgRateWindows struct{ pool *pgxpool.Pool }

func (w pgRateWindows) Take(ctx context.Context, endpointID string, width time.Duration, slot int64, want, per int) (int, error) {
	// SET sees the row before the update: last_grant is what this take got.
	var got int
	err := w.pool.QueryRow(ctx, `INSERT INTO webhook.rate_windows AS w (endpoint_id, width_us, slot, used, last_grant)
		VALUES ($1, $2, $3, least($4::int, $5::int), least($4::int, $5::int))
		ON CONFLICT (endpoint_id, width_us, slot) DO UPDATE SET used = w.used + least($4::int, $5::int - w.used), last_grant = least($4::int, $5::int - w.used)
		WHERE w.used < $5::int
		RETURNING last_grant`, endpointID, width.Microseconds(), slot, want, per).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil // spent by other replicas
	}
	if err != nil {
		return 0, fmt.Errorf("take a rate-limit slot: %w", err)
	}
	return got, nil
}

// prune deletes slots older than a minute.
func (w pgRateWindows) prune(ctx context.Context, now time.Time) error {
	_, err := w.pool.Exec(ctx, `DELETE FROM webhook.rate_windows WHERE slot < $1::bigint / width_us`, now.Add(-time.Minute).UnixMicro())
	return err
}
