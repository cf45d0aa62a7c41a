// Package replay processes dead letters again, per consumer, for every
// place an operator replays them from: `eventline dlq replay`, `eventline
// rejected replay` and the operator console (docs/operations.md).
package replay

import (
	"context"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/notifier"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/projector"
	"github.com/eventline/eventline/internal/webhooker"
)

// Func processes one letter again for its consumer. It returns the reason
// the letter is still poison, or an error reaching the database.
type Func func(context.Context, *pgxpool.Pool, deadletter.Letter) (poison, err error)

var byConsumer = map[string]Func{
	projector.DefaultConsumer: projector.ReplayDeadLetter,
	notifier.DefaultConsumer:  notifier.ReplayDeadLetter,
	webhooker.DefaultConsumer: webhooker.ReplayDeadLetter,
}

// Consumers lists the consumers that have dead letters, sorted.
func Consumers() []string {
	names := make([]string, 0, len(byConsumer))
	for n := range byConsumer {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Known reports whether consumer is one of Consumers.
func Known(consumer string) bool {
	_, ok := byConsumer[consumer]
	return ok
}

// For returns the replay of a consumer's letters: the consumer's own, and
// the projector's for a rebuild's durable (its letters go into the current
// generation).
func For(consumer string) (Func, bool) {
	if strings.HasPrefix(consumer, projector.RebuildConsumerPrefix) {
		return projector.ReplayDeadLetter, true
	}
	r, ok := byConsumer[consumer]
	return r, ok
}

// Letter processes l again with its consumer's replay. poison is why it
// still fails, kept on the letter as its new reason; err is a failure to
// reach the database. A letter replayed cleanly is marked replayed by the
// consumer's replay.
func Letter(ctx context.Context, pool *pgxpool.Pool, l deadletter.Letter) (poison, err error) {
	replay, ok := For(l.Consumer)
	if !ok {
		return nil, &UnknownConsumerError{Consumer: l.Consumer}
	}
	poison, err = replay(ctx, pool, l)
	if err != nil && postgres.Permanent(err) {
		// Postgres still refuses its data: the letter stays poison and
		// keeps the new reason; the other letters are still replayed.
		poison, l.Error = err, err.Error()
		err = deadletter.Add(ctx, pool, l)
	}
	return poison, err
}

// UnknownConsumerError means a letter's consumer has no replay.
type UnknownConsumerError struct{ Consumer string }

func (e *UnknownConsumerError) Error() string {
	return "no replay for consumer " + e.Consumer + "; use one of " + strings.Join(Consumers(), ", ")
}
