package notifier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/pkg/events"
)

// TestFailureInThePipelinedTransactionRollsBackEverything: a statement
// that fails in any of the transaction's round trips — the first (with
// BEGIN), a middle one, the last (with COMMIT), or COMMIT itself — leaves
// nothing behind: no claim, checkpoint, watch, notification, digest or
// NOTIFY. The error keeps its class (permanent or not), and the connection
// goes back to the pool outside a transaction, reused rather than
// replaced. The same event applies once the failure is gone.
func TestFailureInThePipelinedTransactionRollsBackEverything(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		trigger   string // %s is the trigger function
		sqlstate  string
		permanent bool
	}{
		{"first round trip", `CREATE TRIGGER inject BEFORE INSERT ON notify.processed FOR EACH ROW EXECUTE FUNCTION %s`, "40001", false},
		{"middle round trip", `CREATE TRIGGER inject BEFORE INSERT ON notify.notifications FOR EACH ROW EXECUTE FUNCTION %s`, "23514", true},
		{"last round trip", `CREATE TRIGGER inject BEFORE INSERT ON notify.digests FOR EACH ROW EXECUTE FUNCTION %s`, "22023", true},
		{"commit", `CREATE CONSTRAINT TRIGGER inject AFTER INSERT ON notify.notifications DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %s`, "40P01", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool, _, _ := countingPool(t)
			const name = "failing"
			_, err := checkpoint(ctx, pool, name, time.Unix(1, 0), func(context.Context) (uint64, error) { return 0, nil })
			require.NoError(t, err)
			c := &orderedConsumer{name: name, pool: pool, w: &writer{pool: pool, now: time.Now}, cfg: Config{}.withDefaults()}
			// u2 wants digests: the event opens a window in the last round trip.
			_, err = pool.Exec(ctx, `INSERT INTO notify.preferences (tenant, user_id, email, digest) VALUES ('acme', 'u2', 'u2@example.com', 'daily')`)
			require.NoError(t, err)
			_, err = pool.Exec(ctx, `CREATE FUNCTION inject() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN RAISE EXCEPTION 'injected failure' USING ERRCODE = TG_ARGV[0]; END $$`)
			require.NoError(t, err)
			_, err = pool.Exec(ctx, fmt.Sprintf(tc.trigger, "inject('"+tc.sqlstate+"')"))
			require.NoError(t, err)
			var pid uint32
			require.NoError(t, pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))

			listener, err := pgx.Connect(ctx, pool.Config().ConnConfig.ConnString())
			require.NoError(t, err)
			t.Cleanup(func() { _ = listener.Close(context.Background()) })
			_, err = listener.Exec(ctx, "LISTEN "+notifyChannel)
			require.NoError(t, err)

			e := ev("c1", "card", "published", "u1", `{"assignee_ids":["u2"]}`, events.Ref{Type: "board", ID: "b1"})
			e.Type, e.Seq = events.TypeOf(e.Eventable.Type, e.Action), 1
			s := newSlot(0, 1, []*item{{seq: 1, event: &e}}, nil)
			c.apply(ctx, s)
			require.Error(t, s.err)
			var pgErr *pgconn.PgError
			require.True(t, errors.As(s.err, &pgErr), "the Postgres error is kept: %v", s.err)
			require.Equal(t, tc.sqlstate, pgErr.Code)
			require.Equal(t, tc.permanent, isPermanent(s.err), "%v", s.err)
			require.Equal(t, tc.permanent, postgres.Permanent(s.err), "%v", s.err)

			var left int
			require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM notify.processed) + (SELECT count(*) FROM notify.watches)
				+ (SELECT count(*) FROM notify.notifications) + (SELECT count(*) FROM notify.inboxes) + (SELECT count(*) FROM notify.digests)
				+ (SELECT last_seq FROM notify.progress WHERE consumer = $1)`, name).Scan(&left))
			require.Zero(t, left, "a failed transaction leaves nothing behind")
			// The connection went back to the pool outside a transaction:
			// the pool's one connection is the same backend, not a new one.
			var again uint32
			require.NoError(t, pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&again))
			require.Equal(t, pid, again, "the connection is reused")
			require.EqualValues(t, 1, pool.Stat().NewConnsCount(), "no connection was destroyed")

			// NOTIFY only on commit: the first notification the listener
			// hears is a marker sent after the failure.
			_, err = pool.Exec(ctx, `SELECT pg_notify($1, 'marker')`, notifyChannel)
			require.NoError(t, err)
			n, err := listener.WaitForNotification(ctx)
			require.NoError(t, err)
			require.Equal(t, "marker", n.Payload)

			// The failure gone, the same event applies, once.
			_, err = pool.Exec(ctx, `DROP TRIGGER inject ON `+triggerTable(tc.trigger))
			require.NoError(t, err)
			s = newSlot(0, 1, []*item{{seq: 1, event: &e}}, nil)
			c.apply(ctx, s)
			require.NoError(t, s.err)
			require.Equal(t, applyResult{applied: 1, notifications: 1}, s.res)
			n, err = listener.WaitForNotification(ctx)
			require.NoError(t, err)
			require.Contains(t, n.Payload, `"user_id":"u2"`)
			var digests int
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM notify.digests WHERE user_id = 'u2' AND status = 'pending'`).Scan(&digests))
			require.Equal(t, 1, digests)
			require.NoError(t, pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&again))
			require.Equal(t, pid, again, "the connection is reused")
		})
	}
}

// triggerTable is the table a CREATE TRIGGER statement of the test names.
func triggerTable(create string) string {
	_, rest, _ := strings.Cut(create, " ON ")
	table, _, _ := strings.Cut(rest, " ")
	return table
}

// TestPipeTxEndsOutsideATransaction: the states pipeTx leaves a
// connection in, on its own: committed, a statement failing in the first
// round trip, and a transaction abandoned between round trips.
func TestPipeTxEndsOutsideATransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, trips, _ := countingPool(t)
	_, err := pool.Exec(ctx, `CREATE TABLE t (x int PRIMARY KEY)`)
	require.NoError(t, err)
	status := func(tx *pipeTx) byte { return tx.conn.Conn().PgConn().TxStatus() }
	count := func() (n int) {
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n))
		return n
	}

	// Committed: BEGIN with the first statement, COMMIT with the last, two
	// round trips (once the connection has prepared the statements).
	for i := range 2 {
		before := trips.Load()
		tx, err := beginPipelined(ctx, pool)
		require.NoError(t, err)
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO t VALUES ($1)`, 10*i+1)
		require.NoError(t, tx.send(ctx, b, nil))
		require.Equal(t, byte('T'), status(tx))
		b = &pgx.Batch{}
		b.Queue(`INSERT INTO t VALUES ($1)`, 10*i+2)
		require.NoError(t, tx.commit(ctx, b, func(br pgx.BatchResults) error { _, err := br.Exec(); return err }))
		require.Equal(t, byte('I'), status(tx))
		tx.end(ctx)
		if i == 1 {
			require.EqualValues(t, 2, trips.Load()-before)
		}
	}
	require.Equal(t, 4, count())

	// A statement failing in the first round trip: the rest of it is
	// skipped and the transaction rolled back.
	tx, err := beginPipelined(ctx, pool)
	require.NoError(t, err)
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO t VALUES (3)`)
	b.Queue(`INSERT INTO t VALUES (1)`) // a duplicate key
	b.Queue(`INSERT INTO t VALUES (4)`)
	err = tx.send(ctx, b, nil)
	require.True(t, postgres.IsUniqueViolation(err), "%v", err)
	require.Equal(t, byte('E'), status(tx))
	tx.end(ctx)
	require.Equal(t, 4, count())

	// A failure in the round trip with COMMIT: COMMIT is skipped.
	tx, err = beginPipelined(ctx, pool)
	require.NoError(t, err)
	b = &pgx.Batch{}
	b.Queue(`INSERT INTO t VALUES (5)`)
	require.NoError(t, tx.send(ctx, b, nil))
	b = &pgx.Batch{}
	b.Queue(`INSERT INTO t VALUES (2)`)
	err = tx.commit(ctx, b, func(br pgx.BatchResults) error { _, err := br.Exec(); return err })
	require.True(t, postgres.IsUniqueViolation(err), "%v", err)
	require.Equal(t, byte('E'), status(tx))
	tx.end(ctx)
	require.Equal(t, 4, count())

	// Abandoned after a round trip (the code between failed): rolled back.
	tx, err = beginPipelined(ctx, pool)
	require.NoError(t, err)
	b = &pgx.Batch{}
	b.Queue(`INSERT INTO t VALUES (6)`)
	require.NoError(t, tx.send(ctx, b, nil))
	tx.end(ctx)
	require.Equal(t, 4, count())

	// Nothing sent, nothing to send: no round trip.
	before := trips.Load()
	tx, err = beginPipelined(ctx, pool)
	require.NoError(t, err)
	require.NoError(t, tx.commit(ctx, &pgx.Batch{}, nil))
	tx.end(ctx)
	require.Zero(t, trips.Load()-before)

	// Every step above reused the pool's one connection.
	require.EqualValues(t, 1, pool.Stat().NewConnsCount())
}
