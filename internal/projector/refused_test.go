package projector

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// refuseTrigger makes Postgres refuse, with SQLSTATE sqlstate, every row of
// table whose column col equals value (while the table refuse holds a row
// when guarded): a stand-in for any value Postgres cannot store.
func refuseTrigger(t *testing.T, b *bundle, table, col, value, sqlstate string, guarded bool) {
	t.Helper()
	cond := fmt.Sprintf("NEW.%s = %s", col, quote(value))
	if guarded {
		_, err := b.pool.Exec(context.Background(), `CREATE TABLE refuse (on_ boolean); INSERT INTO refuse VALUES (true)`)
		require.NoError(t, err)
		cond += " AND EXISTS (SELECT 1 FROM refuse)"
	}
	_, err := b.pool.Exec(context.Background(), fmt.Sprintf(`
		CREATE FUNCTION refuse_marker() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF %s THEN
				RAISE EXCEPTION 'refused by the test' USING ERRCODE = %s;
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse_marker BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION refuse_marker()`, cond, quote(sqlstate), table))
	require.NoError(t, err)
}

func quote(s string) string { return "'" + s + "'" }

// TestRefusedEventDeadLetteredAlone: Postgres refuses one event of a large
// batch (a data exception): that event is dead-lettered on its first
// delivery and every other one is projected, in a few transactions (the
// batch is split in halves, not retried one message at a time).
func TestRefusedEventDeadLetteredAlone(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	ctx := context.Background()
	refuseTrigger(t, b, "timeline_g1.events", "id", "refused", "22023", false)
	const n = 400
	in := make([]events.Event, n)
	for i := range in {
		in[i] = ev("acme", fmt.Sprintf("e%d", i), "card", fmt.Sprintf("c%d", i%7), "moved", events.Ref{Type: "board", ID: "b1"})
	}
	in[277].ID = "refused"
	_, err := b.pub.AppendBatch(ctx, in)
	require.NoError(t, err)

	var commits atomic.Int64
	b.worker(t, Config{BatchSize: 500}, func(stage string, _ int) error {
		if stage == "before_commit" {
			commits.Add(1)
		}
		return nil
	})
	b.waitEvents(t, n-1)
	testenv.Poll(t, 10*time.Second, "every message acked or terminated", func() bool {
		info, err := b.cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	letters, err := deadletter.NewStore(b.pool).List(ctx, deadletter.ListParams{Consumer: "projector"})
	require.NoError(t, err)
	require.Len(t, letters, 1)
	require.Contains(t, letters[0].Error, "refused by the database")
	require.Contains(t, letters[0].Error, "SQLSTATE 22023")
	require.Equal(t, 1, letters[0].Failures)
	got, entries := b.count(t)
	require.Equal(t, n-1, got)
	require.Equal(t, 2*(n-1), entries)
	// Bisecting 400 messages takes about 2·log2(400) ≈ 18 transactions (a
	// few more when the worker fetched them in several batches); one
	// message at a time took 400.
	require.LessOrEqual(t, commits.Load(), int64(60), "transactions")
	t.Logf("%d transactions for %d events with one refused", commits.Load(), n)
}

// TestTransientFailureRetried: a failure that is not the data's fault (a
// serialization failure) is retried until it passes, never dead-lettered.
func TestTransientFailureRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	ctx := context.Background()
	refuseTrigger(t, b, "timeline_g1.events", "id", "unlucky", "40001", true)
	_, err := b.pub.AppendBatch(ctx, []events.Event{ev("acme", "before", "card", "c1", "moved"), ev("acme", "unlucky", "card", "c1", "moved")})
	require.NoError(t, err)
	retries := &countingHandler{message: "projecting batch failed; retrying"}
	b.log = slog.New(retries)
	b.worker(t, Config{RetryBackoff: 10 * time.Millisecond}, nil)
	// The worker retries with backoff; lift the failure once it has failed
	// a few times.
	testenv.Poll(t, 10*time.Second, "the worker retrying", func() bool { return retries.n.Load() >= 3 })
	_, err = b.pool.Exec(ctx, `DELETE FROM refuse`)
	require.NoError(t, err)
	b.waitEvents(t, 2)
	letters, err := deadletter.NewStore(b.pool).List(ctx, deadletter.ListParams{})
	require.NoError(t, err)
	require.Empty(t, letters)
}

// countingHandler counts the log records with one message.
type countingHandler struct {
	message string
	n       atomic.Int64
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.message {
		h.n.Add(1)
	}
	return nil
}

func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }
