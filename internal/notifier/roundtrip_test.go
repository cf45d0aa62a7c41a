package notifier

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// TestBatchMovesTheCheckpointInItsFirstRoundTrip: a batch with no batch
// before it moves the checkpoint together with its de-duplication keys,
// not in a round trip of its own; a batch whose checkpoint another replica
// moved is fenced out there and writes nothing.
func TestBatchMovesTheCheckpointInItsFirstRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(testenv.Database(t))
	require.NoError(t, err)
	trace := &testenv.RoundTrips{}
	trace.Configure(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	const name = "roundtrips"
	_, err = checkpoint(ctx, pool, name, time.Unix(1, 0), func(context.Context) (uint64, error) { return 0, nil })
	require.NoError(t, err)
	c := &orderedConsumer{name: name, pool: pool, w: &writer{pool: pool, now: time.Now}, cfg: Config{}.withDefaults()}
	one := func(seq uint64, id string) *slot {
		e := ev(id, "card", "published", "u1", `{"assignee_ids":["u2"]}`)
		e.Type, e.Seq = events.TypeOf(e.Eventable.Type, e.Action), seq
		return newSlot(seq-1, seq, []*item{{seq: seq, event: &e}}, nil)
	}

	trace.Start()
	s := one(1, "first")
	c.apply(ctx, s)
	require.NoError(t, s.err)
	var last int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT last_seq FROM notify.progress WHERE consumer = $1`, name).Scan(&last))
	require.EqualValues(t, 1, last)
	_, sent := trace.Stop()
	var withClaim, alone int
	for _, st := range sent {
		if strings.Contains(st, "UPDATE notify.progress") {
			if strings.Contains(st, "INSERT INTO notify.processed") {
				withClaim++
			} else {
				alone++
			}
		}
	}
	require.Equal(t, 1, withClaim, "the checkpoint moves with the de-duplication keys: %q", sent)
	require.Zero(t, alone, "no round trip of its own: %q", sent)

	// Another replica moved the checkpoint past 1: a batch after 1 is fenced.
	_, err = pool.Exec(ctx, `UPDATE notify.progress SET last_seq = 2 WHERE consumer = $1`, name)
	require.NoError(t, err)
	s = one(2, "second")
	c.apply(ctx, s)
	require.ErrorIs(t, s.err, errFenced)
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM notify.processed WHERE event_id = 'second'`).Scan(&n))
	require.Zero(t, n, "a fenced batch writes nothing")
}

// countingPool is a pool of one connection whose round trips and
// statements trips counts and records. It never pings a connection it
// hands out, so the count is what the code under test sends.
func countingPool(t *testing.T) (*pgxpool.Pool, *testenv.RoundTrips) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testenv.Database(t))
	require.NoError(t, err)
	trips := &testenv.RoundTrips{}
	trips.Configure(cfg)
	cfg.MaxConns, cfg.MinConns = 1, 0
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool, trips
}

// Round trips of one event's transaction at low rates (the batch before it
// committed), on a connection that has prepared the statements: the
// ceilings the test holds the code to.
const (
	maxTripsNoRule    = 3 // BEGIN, checkpoint+claim+rules, COMMIT
	maxTripsNotify    = 6 // BEGIN, claim, watchers, upsert, totals+NOTIFY+preferences, COMMIT
	maxTripsDigest    = 7 // the same and the digest's insert
	maxTripsRedeliver = 3 // as no rule
	maxTripsReplay    = 7 // no checkpoint, one statement of its own
)

// TestRoundTripsPerEvent counts the Postgres round trips of applying one
// event in the notifier's transaction, for the common cases, and fails
// when one takes more than its ceiling.
func TestRoundTripsPerEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, trips := countingPool(t)
	const name = "counted"
	_, err := checkpoint(ctx, pool, name, time.Unix(1, 0), func(context.Context) (uint64, error) { return 0, nil })
	require.NoError(t, err)
	c := &orderedConsumer{name: name, pool: pool, w: &writer{pool: pool, now: time.Now}, cfg: Config{}.withDefaults()}
	seq := uint64(0)
	board := events.Ref{Type: "board", ID: "b1"}
	// apply applies e alone, as the next batch of the stream, and returns
	// its round trips.
	apply := func(e events.Event) (int, testenv.Statements) {
		t.Helper()
		seq++
		e.Type, e.Seq = events.TypeOf(e.Eventable.Type, e.Action), seq
		s := newSlot(seq-1, seq, []*item{{seq: seq, event: &e}}, nil)
		trips.Start()
		c.apply(ctx, s)
		n, sent := trips.Stop()
		require.NoError(t, s.err)
		return n, sent
	}
	check := func(what string, max int, e func(i int) events.Event) {
		t.Helper()
		// The first run prepares the statements on the connection.
		for i := range 2 {
			n, sent := apply(e(i))
			t.Logf("%s (run %d): %d round trips: %q", what, i, n, sent)
			if i == 1 {
				require.LessOrEqual(t, n, max, "%s: %q", what, sent)
			}
		}
	}
	check("no rule matches", maxTripsNoRule, func(i int) events.Event {
		return ev(fmt.Sprintf("renamed-%d", i), "card", "renamed", "u1", "", board)
	})
	// u1 publishes cards assigned to u2: u2 is notified, both watch them.
	check("notifies", maxTripsNotify, func(i int) events.Event {
		e := ev(fmt.Sprintf("c%d", i), "card", "published", "u1", `{"assignee_ids":["u2"]}`, board)
		return e
	})
	// u3 closes them: their watchers u1 and u2 are notified.
	check("notifies watchers", maxTripsNotify, func(i int) events.Event {
		e := ev(fmt.Sprintf("close-%d", i), "card", "closed", "u3", "", board)
		e.Eventable = events.Ref{Type: "card", ID: fmt.Sprintf("c%d", i)}
		return e
	})
	// A user who wants digests and has none pending: the notification opens
	// a window.
	check("schedules a digest", maxTripsDigest, func(i int) events.Event {
		u := fmt.Sprintf("d%d", i)
		_, err := pool.Exec(ctx, `INSERT INTO notify.preferences (tenant, user_id, email, digest) VALUES ('acme', $1, $1 || '@example.com', 'daily')`, u)
		require.NoError(t, err)
		return ev(fmt.Sprintf("assign-%d", i), "card", "assigned", "u1", fmt.Sprintf(`{"assignee_ids":[%q]}`, u), board)
	})
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM notify.digests WHERE user_id IN ('d0', 'd1')`).Scan(&n))
	require.Equal(t, 2, n, "each notified user who wants digests has a window")
	// A redelivery of an applied event (a new stream message with its id).
	check("redelivery", maxTripsRedeliver, func(i int) events.Event {
		return ev(fmt.Sprintf("c%d", i), "card", "published", "u1", `{"assignee_ids":["u2"]}`, board)
	})
	// A dead letter replayed: no checkpoint; marking it replayed is a
	// statement of its own.
	for i := range 2 {
		e := ev(fmt.Sprintf("replayed-%d", i), "card", "closed", "u3", "", board)
		e.Eventable = events.Ref{Type: "card", ID: "c0"}
		e.Type = events.TypeOf(e.Eventable.Type, e.Action)
		trips.Start()
		_, err := c.w.applyWith(ctx, []*events.Event{&e}, nil, nil, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `SELECT 1`)
			return err
		})
		got, sent := trips.Stop()
		require.NoError(t, err)
		t.Logf("replay (run %d): %d round trips: %q", i, got, sent)
		if i == 1 {
			require.LessOrEqual(t, got, maxTripsReplay, "replay: %q", sent)
		}
	}
}
