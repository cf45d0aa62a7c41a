package notifier

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// statements records what a pool sends: each lone statement, and each
// batch as its statements joined by " ; ".
type statements struct {
	mu   sync.Mutex
	sent []string
	cur  []string
}

func (s *statements) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, strings.Join(strings.Fields(d.SQL), " "))
	return ctx
}
func (s *statements) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (s *statements) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (s *statements) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = append(s.cur, strings.Join(strings.Fields(d.SQL), " "))
}
func (s *statements) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, strings.Join(s.cur, " ; "))
	s.cur = nil
}

func (s *statements) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.sent
	s.sent = nil
	return out
}

// TestBatchMovesTheCheckpointInItsFirstRoundTrip: a batch with no batch
// before it moves the checkpoint together with its de-duplication keys,
// not in a round trip of its own; a batch whose checkpoint another replica
// moved is fenced out there and writes nothing.
func TestBatchMovesTheCheckpointInItsFirstRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(testenv.Database(t))
	require.NoError(t, err)
	trace := &statements{}
	cfg.ConnConfig.Tracer = trace
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

	trace.take()
	s := one(1, "first")
	c.apply(ctx, s)
	require.NoError(t, s.err)
	var last int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT last_seq FROM notify.progress WHERE consumer = $1`, name).Scan(&last))
	require.EqualValues(t, 1, last)
	sent := trace.take()
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
