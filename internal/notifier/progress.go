package notifier

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// errFenced is returned by a batch whose commit would not follow the
// checkpoint: another replica (or an earlier run of this one) applied
// that part of the stream first. The batch is rolled back.
var errFenced = errors.New("the notifier checkpoint moved: another replica applied these events")

// checkpoint reads the notifier's checkpoint: the last stream sequence
// applied. A consumer without one starts where its durable's acks say it
// is (everything acked was applied by the notifier before checkpoints
// existed); a stream created anew (streamCreated differs from the one
// recorded) starts there too, since its sequences start again.
func checkpoint(ctx context.Context, pool *pgxpool.Pool, consumer string, streamCreated time.Time, ackFloor func(context.Context) (uint64, error)) (uint64, error) {
	streamCreated = streamCreated.UTC().Truncate(time.Microsecond)
	var last int64
	var created time.Time
	err := pool.QueryRow(ctx, `SELECT last_seq, stream_created FROM notify.progress WHERE consumer = $1`, consumer).Scan(&last, &created)
	if err == nil && created.Equal(streamCreated) {
		return uint64(last), nil
	}
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("read the notifier checkpoint: %w", err)
	}
	floor, ferr := ackFloor(ctx)
	if ferr != nil {
		return 0, fmt.Errorf("read the durable's ack floor: %w", ferr)
	}
	// Only a missing row or one of another stream is replaced; a replica
	// that got there first wins.
	var got int64
	err = pool.QueryRow(ctx, `INSERT INTO notify.progress AS p (consumer, stream_created, last_seq) VALUES ($1, $2, $3)
		ON CONFLICT (consumer) DO UPDATE SET stream_created = excluded.stream_created, last_seq = excluded.last_seq, updated_at = now()
		WHERE p.stream_created <> excluded.stream_created
		RETURNING last_seq`, consumer, streamCreated, int64(floor)).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return checkpoint(ctx, pool, consumer, streamCreated, ackFloor)
	}
	if err != nil {
		return 0, fmt.Errorf("start the notifier checkpoint: %w", err)
	}
	return uint64(got), nil
}

// advance moves the checkpoint from after to last inside tx, the batch's
// last statement before commit (or its first: advanceFirst). It returns errFenced when the checkpoint
// is not after: the batch does not follow what was committed.
func advance(ctx context.Context, tx pgx.Tx, consumer string, after, last uint64) error {
	tag, err := tx.Exec(ctx, advanceSQL, consumer, int64(after), int64(last))
	return advanceResult(tag, err)
}

// advanceSQL moves the checkpoint from after ($2) to last ($3); it
// updates no row when another replica moved it.
const advanceSQL = `UPDATE notify.progress SET last_seq = $3, updated_at = now() WHERE consumer = $1 AND last_seq = $2`

// queueAdvance is advance as one statement of a batch; readAdvance reads
// its result.
func queueAdvance(b *pgx.Batch, consumer string, after, last uint64) {
	b.Queue(advanceSQL, consumer, int64(after), int64(last))
}

func readAdvance(br pgx.BatchResults) error {
	tag, err := br.Exec()
	return advanceResult(tag, err)
}

func advanceResult(tag pgconn.CommandTag, err error) error {
	if err != nil {
		return fmt.Errorf("advance the notifier checkpoint: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return errFenced
	}
	return nil
}
