package projector

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/pkg/events"
)

// ReplayDeadLetter projects one dead-lettered message again (after the
// cause was fixed) into the current generation and marks it replayed. If
// it still cannot be projected, the letter keeps the new error, its failure
// count grows, and that reason is returned as poison; err reports a failure
// to reach the database.
func ReplayDeadLetter(ctx context.Context, pool *pgxpool.Pool, l deadletter.Letter) (poison, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var e events.Event
		var err error
		if e, poison, err = deadletter.Event(ctx, tx, l); err != nil || poison != nil {
			return err
		}
		g, err := lockGeneration(ctx, tx)
		if err != nil {
			return err
		}
		if _, err := insertEvents(ctx, tx, g, []events.Event{e}); err != nil {
			return err
		}
		return deadletter.MarkReplayed(ctx, tx, l.Consumer, l.StreamSeq)
	})
	return poison, err
}
