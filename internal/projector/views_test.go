package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// sampleEvents are the events docs/sql.md shows: a board "roadmap" of
// tenant acme with two cards and two comments on the first, by users ann
// and bob, and one event of tenant globex that no acme reader may see.
func sampleEvents() []events.Event {
	board := events.Ref{Type: "board", ID: "roadmap"}
	card1 := events.Ref{Type: "card", ID: "card-1"}
	at := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	e := func(seq uint64, tenant, when, typ, id, action, user, particulars string, parents ...events.Ref) events.Event {
		return events.Event{ID: fmt.Sprintf("evt-%d", seq), Tenant: tenant, Seq: seq, Action: action, Type: events.TypeOf(typ, action),
			Eventable: events.Ref{Type: typ, ID: id}, Creator: events.Ref{Type: "user", ID: user}, Parents: parents,
			Particulars: json.RawMessage(particulars), OccurredAt: at(when), RecordedAt: at(when)}
	}
	return []events.Event{
		e(1, "acme", "2025-03-03T09:00:00Z", "card", "card-1", "created", "ann", `{"title": "Write the SQL guide"}`, board),
		e(2, "acme", "2025-03-03T09:30:00Z", "comment", "comment-1", "created", "bob", `{"body": "@ann I can review it"}`, card1, board),
		e(3, "acme", "2025-03-03T10:15:00Z", "card", "card-2", "created", "bob", `{"title": "Rebuild without downtime"}`, board),
		e(4, "globex", "2025-03-03T11:00:00Z", "card", "card-9", "created", "zoe", `{"title": "Not acme's"}`, events.Ref{Type: "board", ID: "plans"}),
		e(5, "acme", "2025-03-04T08:00:00Z", "card", "card-1", "moved", "ann", `{"from": "todo", "to": "doing"}`, board),
		e(6, "acme", "2025-03-04T11:20:00Z", "comment", "comment-2", "created", "ann", `{"body": "First draft is up"}`, card1, board),
		e(7, "acme", "2025-03-05T16:45:00Z", "card", "card-1", "closed", "ann", `{}`, board),
	}
}

// seedGeneration stores es in generation g as the projector does.
func seedGeneration(t *testing.T, pool *pgxpool.Pool, g int, es []events.Event) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := insertEvents(ctx, tx, g, es)
		return err
	}))
	// Autovacuum is off on the test server: plans need statistics.
	_, err := pool.Exec(ctx, fmt.Sprintf("ANALYZE %[1]s.events; ANALYZE %[1]s.entries", schema(g)))
	require.NoError(t, err)
}

// createLogin creates a LOGIN role named prefix+random with the given
// options (" IN ROLE eventline_reader"), dropped when the test ends.
func createLogin(t *testing.T, owner *pgxpool.Pool, prefix, options string) string {
	t.Helper()
	name := prefix + randomSuffix()
	_, err := owner.Exec(context.Background(), "CREATE ROLE "+name+" LOGIN"+options)
	require.NoError(t, err)
	dropRoleAtEnd(t, owner, name)
	return name
}

// dropRoleAtEnd drops a role when the test ends (roles are shared by every
// database of the server); cleanups run last-in first-out, so pools opened
// as the role afterwards are closed by then.
func dropRoleAtEnd(t *testing.T, owner *pgxpool.Pool, name string) {
	t.Cleanup(func() {
		if _, err := owner.Exec(context.Background(), "DROP OWNED BY "+name+"; DROP ROLE "+name); err != nil {
			t.Logf("drop role %s: %v", name, err)
		}
	})
}

// connectAs opens a pool on owner's database as role, with the given
// startup parameters (e.g. "options": "-c eventline.tenant=acme", what
// PGOPTIONS sends from psql).
func connectAs(t *testing.T, owner *pgxpool.Pool, role string, params map[string]string) *pgxpool.Pool {
	t.Helper()
	cfg := owner.Config().Copy()
	cfg.ConnConfig.User, cfg.ConnConfig.Password = role, ""
	cfg.ConnConfig.RuntimeParams = map[string]string{}
	for k, v := range params {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	cfg.AfterConnect = nil
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, pool.Ping(context.Background()), "connect as %s (the test server must trust loopback logins)", role)
	return pool
}

// withTenant sets the session's tenant as docs/sql.md tells readers to.
func withTenant(tenant string) map[string]string {
	return map[string]string{"options": "-c eventline.tenant=" + tenant}
}

// requireSQLState fails unless err is a Postgres error with SQLSTATE code,
// and returns its fields.
func requireSQLState(t *testing.T, err error, code, what string) (message, hint string) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr) && pgErr.Code == code, "%s: want SQLSTATE %s, got %v", what, code, err)
	return pgErr.Message, pgErr.Hint
}

func countOf(t *testing.T, pool *pgxpool.Pool, sql string) (int, error) {
	t.Helper()
	var n int
	err := pool.QueryRow(context.Background(), sql).Scan(&n)
	return n, err
}

// TestReaderRoles: eventline_reader reads the views of the tenant its
// session names, fails loudly with none, and reads nothing else;
// eventline_analyst reads every tenant's timelines and nothing else. It
// holds on a generation a rebuild creates later.
func TestReaderRoles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner := testenv.Pool(t)
	seedGeneration(t, owner, 1, sampleEvents())
	readerRole := createLogin(t, owner, "el_test_reader_", " IN ROLE eventline_reader")
	analystRole := createLogin(t, owner, "el_test_analyst_", " IN ROLE eventline_analyst")
	acme := connectAs(t, owner, readerRole, withTenant("acme"))
	unset := connectAs(t, owner, readerRole, nil)
	analyst := connectAs(t, owner, analystRole, nil)

	check := func(t *testing.T, g int) {
		for _, q := range []string{
			"SELECT count(*) FROM timeline.events",
			"SELECT count(*) FROM timeline.entries",
			"SELECT count(*) FROM timeline.entries WHERE object_type = 'board' AND object_id = 'roadmap'",
			"SELECT count(*) FROM timeline.events WHERE action = 'created'",
			fmt.Sprintf("SELECT count(*) FROM timeline_g%d.events", g),
		} {
			_, err := countOf(t, unset, q)
			message, hint := requireSQLState(t, err, "42501", "no tenant: "+q)
			require.Equal(t, "eventline.tenant is not set", message)
			require.Contains(t, hint, "SET eventline.tenant")
		}
		n, err := countOf(t, acme, "SELECT count(*) FROM timeline.events")
		require.NoError(t, err)
		require.Equal(t, 6, n, "acme's events")
		n, err = countOf(t, acme, "SELECT count(*) FROM timeline.events WHERE tenant = 'globex'")
		require.NoError(t, err)
		require.Zero(t, n, "acme asking for globex by name")
		n, err = countOf(t, acme, "SELECT count(*) FROM timeline.entries WHERE object_type = 'board' AND object_id = 'roadmap' AND particulars IS NOT NULL AND parents IS NOT NULL")
		require.NoError(t, err)
		require.Equal(t, 6, n, "the board's timeline with its events' particulars and parents")
		n, err = countOf(t, analyst, "SELECT count(DISTINCT tenant) FROM timeline.events")
		require.NoError(t, err)
		require.Equal(t, 2, n, "the analyst reads every tenant")
		n, err = countOf(t, analyst, "SELECT count(*) FROM timeline.entries")
		require.NoError(t, err)
		require.Equal(t, 16, n, "every entry of every tenant")
	}
	t.Run("generation 1", func(t *testing.T) { check(t, 1) })

	t.Run("nothing else", func(t *testing.T) {
		for _, pool := range []*pgxpool.Pool{acme, analyst} {
			for _, q := range []string{
				"SELECT count(*) FROM webhook.endpoints",
				"SELECT count(*) FROM auth.api_keys",
				"SELECT count(*) FROM eventline.dead_letters",
				"SELECT count(*) FROM timeline_g1.progress",
			} {
				_, err := countOf(t, pool, q)
				requireSQLState(t, err, "42501", q)
			}
			for _, q := range []string{
				"INSERT INTO timeline_g1.events SELECT * FROM timeline_g1.events LIMIT 1",
				"DELETE FROM timeline.events",
				"UPDATE timeline.current SET generation = 1",
				"SELECT timeline.switch_generation(1, 1)",
				"SELECT timeline.drop_generation(2)",
			} {
				_, err := pool.Exec(ctx, q)
				requireSQLState(t, err, "42501", q)
			}
		}
	})

	// A rebuild's new generation gets the same policies and grants.
	t.Run("generation 2", func(t *testing.T) {
		_, err := owner.Exec(ctx, "SELECT timeline.create_generation(2)")
		require.NoError(t, err)
		seedGeneration(t, owner, 2, sampleEvents())
		_, err = owner.Exec(ctx, "SELECT timeline.switch_generation(1, 2)")
		require.NoError(t, err)
		_, err = owner.Exec(ctx, "SELECT timeline.drop_generation(1)")
		require.NoError(t, err)
		check(t, 2)
	})
}

// TestViewsRefuseAStaleSnapshot: a REPEATABLE READ transaction whose
// snapshot predates a switch, reading the views after it, would read the
// new generation's tables as of that snapshot (here: empty). It gets a
// serialization failure to retry instead of a wrong answer.
func TestViewsRefuseAStaleSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner := testenv.Pool(t)
	seedGeneration(t, owner, 1, sampleEvents())
	reader := connectAs(t, owner, createLogin(t, owner, "el_test_reader_", " IN ROLE eventline_reader"), withTenant("acme"))

	tx, err := reader.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	var one int
	require.NoError(t, tx.QueryRow(ctx, "SELECT 1").Scan(&one)) // takes the snapshot

	_, err = owner.Exec(ctx, "SELECT timeline.create_generation(2)")
	require.NoError(t, err)
	seedGeneration(t, owner, 2, sampleEvents())
	_, err = owner.Exec(ctx, "SELECT timeline.switch_generation(1, 2)")
	require.NoError(t, err)

	var n int
	err = tx.QueryRow(ctx, "SELECT count(*) FROM timeline.events").Scan(&n)
	requireSQLState(t, err, "40001", fmt.Sprintf("a snapshot from before the switch (it would have counted %d events)", n))
	require.NoError(t, tx.Rollback(ctx))

	// Retried, the transaction reads the new generation.
	require.NoError(t, pgx.BeginTxFunc(ctx, reader, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT count(*) FROM timeline.events").Scan(&n)
	}))
	require.Equal(t, 6, n)
}

// warnSignal is a slog handler that passes each warning's attributes to a
// channel, so a test can wait for one instead of sleeping.
type warnSignal struct {
	ch chan map[string]any
}

func (w warnSignal) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w warnSignal) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w warnSignal) WithGroup(string) slog.Handler                { return w }
func (w warnSignal) Handle(_ context.Context, r slog.Record) error {
	attrs := map[string]any{"msg": r.Message}
	r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.Any(); return true })
	select {
	case w.ch <- attrs:
	default:
	}
	return nil
}

// TestSwitchWaitsForReadersWithoutStallingThem: a reader that keeps a
// transaction open on the views holds the switch back (the views cannot
// change under it), but only for the lock timeout at a time: the switch
// gives up, logs who holds it, lets the queries queued behind it run on
// the current generation, and tries again until the reader is gone. Then
// the next query reads the new generation.
func TestSwitchWaitsForReadersWithoutStallingThem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner := testenv.Pool(t)
	es := sampleEvents()
	seedGeneration(t, owner, 1, es[:len(es)-1])
	_, err := owner.Exec(ctx, "SELECT timeline.create_generation(2)")
	require.NoError(t, err)
	seedGeneration(t, owner, 2, es) // one more event: tells the generations apart
	reader := connectAs(t, owner, createLogin(t, owner, "el_test_reader_", " IN ROLE eventline_reader"), withTenant("acme"))

	holder, err := reader.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = holder.Rollback(ctx) }()
	var n, holderPID int
	require.NoError(t, holder.QueryRow(ctx, "SELECT count(*), pg_backend_pid() FROM timeline.events").Scan(&n, &holderPID))
	require.Equal(t, 5, n)

	warns := make(chan map[string]any, 16)
	switched := make(chan error, 1)
	go func() {
		switched <- retryLockTimeout(ctx, owner, 200*time.Millisecond, slog.New(warnSignal{warns}), "switch timelines", viewNames, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "SELECT timeline.switch_generation(1, 2)")
			return err
		})
	}()
	select {
	case w := <-warns:
		require.Contains(t, w["pids"], int32(holderPID), "the warning names the session holding the views: %v", w)
	case err := <-switched:
		t.Fatalf("the switch did not wait for the open reader: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the switch never gave up waiting for the open reader")
	}
	// Meanwhile other queries are answered, from generation 1, within
	// about one lock timeout each.
	for range 3 {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := reader.QueryRow(qctx, "SELECT count(*) FROM timeline.events").Scan(&n)
		cancel()
		require.NoError(t, err, "a query while the switch waits for the open reader")
		require.Equal(t, 5, n)
	}
	select {
	case err := <-switched:
		t.Fatalf("switched under an open reader: %v", err)
	default:
	}

	require.NoError(t, holder.Commit(ctx))
	select {
	case err := <-switched:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the switch did not complete after the reader left")
	}
	n, err = countOf(t, reader, "SELECT count(*) FROM timeline.events")
	require.NoError(t, err)
	require.Equal(t, 6, n, "generation 2 serves")
}

// readerLoop queries the views as a reader until stop is closed, and
// reports each answer.
type readerLoop struct {
	mu          sync.Mutex
	reads       int
	generations map[int]int // reads per generation seen
	failures    []string
	slowest     time.Duration
}

func (l *readerLoop) record(g int, took time.Duration, failure string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reads++
	l.slowest = max(l.slowest, took)
	if l.generations == nil {
		l.generations = map[int]int{}
	}
	l.generations[g]++
	if failure != "" && len(l.failures) < 10 {
		l.failures = append(l.failures, failure)
	}
}

func (l *readerLoop) snapshot() (int, map[int]int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	gens := map[int]int{}
	for g, n := range l.generations {
		gens[g] = n
	}
	return l.reads, gens, append([]string(nil), l.failures...)
}

// TestRebuildKeepsTheViewsAnswering runs `eventline rebuild timelines`'s
// code to completion, the old generation's drop included, while sessions
// logged in as eventline_reader (tenant acme) query the views in a loop
// and events keep arriving: no query fails, and none answers with fewer of
// acme's events than were there before the rebuild began.
func TestRebuildKeepsTheViewsAnswering(t *testing.T) {
	t.Parallel()
	b := setup(t, ConsumerConfig{})
	b.worker(t, Config{}, nil)
	ctx := context.Background()
	const initial = 1000 // acme's; globex has half as many
	var in []events.Event
	for i := range initial {
		in = append(in, ev("acme", fmt.Sprintf("e%d", i), "card", fmt.Sprintf("c%d", i%20), "moved", events.Ref{Type: "board", ID: "b1"}))
		if i%2 == 0 {
			in = append(in, ev("globex", fmt.Sprintf("g%d", i), "card", "c1", "moved", events.Ref{Type: "board", ID: "b1"}))
		}
	}
	_, err := b.pub.AppendBatch(ctx, in)
	require.NoError(t, err)
	b.waitEvents(t, len(in))

	role := createLogin(t, b.pool, "el_test_reader_", " IN ROLE eventline_reader")
	reader := connectAs(t, b.pool, role, withTenant("acme"))
	queries := []string{
		// The generation is read in the same statement, so under the same
		// snapshot as the rows.
		`SELECT (SELECT generation FROM timeline.current), (SELECT count(*) FROM timeline.events)`,
		`SELECT (SELECT generation FROM timeline.current), (SELECT count(*) FROM timeline.entries
			WHERE object_type = 'board' AND object_id = 'b1' AND particulars IS NOT NULL)`,
		`SELECT (SELECT generation FROM timeline.current), (SELECT count(*) FROM (SELECT * FROM timeline.entries
			WHERE object_type = 'board' AND object_id = 'b1' ORDER BY occurred_at DESC, seq DESC LIMIT 1000) AS page)`,
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var loop readerLoop
	for _, q := range queries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var g, n int
				start := time.Now()
				err := reader.QueryRow(ctx, q).Scan(&g, &n)
				took := time.Since(start)
				switch {
				case err != nil:
					loop.record(g, took, fmt.Sprintf("%v (%s)", err, q))
				case n < initial:
					loop.record(g, took, fmt.Sprintf("generation %d answered %d rows, want at least %d (%s)", g, n, initial, q))
				default:
					loop.record(g, took, "")
				}
			}
		}()
	}
	var appended atomic.Int64
	b.keepAppending(t, stop, &wg, &appended) // live events keep arriving through the switch
	defer func() { close(stop); wg.Wait() }()

	g, err := Rebuild(ctx, b.js, b.pool, RebuildConfig{DropDelay: 100 * time.Millisecond}, b.log)
	_, _, failures := loop.snapshot()
	require.NoError(t, err, "rebuild (reader failures so far: %q)", failures)
	require.Equal(t, 2, g)
	gens, err := Generations(ctx, b.pool)
	require.NoError(t, err)
	require.Equal(t, []int{2}, gens, "the old generation is dropped")

	// Keep reading for a while after the drop.
	done, _, _ := loop.snapshot()
	testenv.Poll(t, 30*time.Second, "reads after the drop", func() bool {
		n, _, _ := loop.snapshot()
		return n >= done+30
	})
	reads, perGeneration, failures := loop.snapshot()
	require.Empty(t, failures, "reader answers during the rebuild (%d reads)", reads)
	require.Positive(t, perGeneration[1], "reads before the switch: %v", perGeneration)
	require.Positive(t, perGeneration[2], "reads after the switch: %v", perGeneration)
	loop.mu.Lock()
	slowest := loop.slowest
	loop.mu.Unlock()
	t.Logf("%d reads: %v per generation, the slowest %v", reads, perGeneration, slowest)

	// The reader saw acme's rows only.
	n, err := countOf(t, reader, "SELECT count(*) FROM timeline.events WHERE tenant <> 'acme'")
	require.NoError(t, err)
	require.Zero(t, n)
}
