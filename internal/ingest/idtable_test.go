package ingest_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/ingest"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
)

// window is the stream's duplicate window in these tests: short, so that
// a re-send can come after it.
const window = time.Second

// pastWindow is how long after an append the stream has forgotten its
// id: the window, up to 50 ms more (nats-server purges ids on a timer
// that re-arms no sooner than 50 ms), and 100 ms for a loaded machine.
const pastWindow = window + 150*time.Millisecond

// TestResendAfterStreamWindowIsDuplicate: once the stream has forgotten an
// id, ingest.event_ids still answers a re-send with duplicate and the
// original seq, and the stream keeps one copy.
func TestResendAfterStreamWindowIsDuplicate(t *testing.T) {
	t.Parallel()
	var pool *pgxpool.Pool
	b := setupWith(t, stream.Config{Duplicates: window}, func(c *ingest.Config, p *pgxpool.Pool) {
		c.IDs, c.IdempotencyRetention, pool = p, 24*time.Hour, p
	})
	first := postJSON(t, b, b.key, batch(event("keep-1", 1), event("keep-2", 2)))
	require.Equal(t, http.StatusAccepted, first.status)
	waitRecorded(t, pool, "keep-1", "keep-2")
	// A sleep, not a poll: the stream forgets ids on nats-server's own timer, which no clock of ours drives and nothing reports.
	time.Sleep(pastWindow)

	again := postJSON(t, b, b.key, batch(event("keep-1", 1), event("new-3", 3), event("keep-2", 2)))
	require.Equal(t, http.StatusAccepted, again.status)
	require.Len(t, again.results, 3)
	require.True(t, again.results[0].Duplicate)
	require.Equal(t, first.results[0].Seq, again.results[0].Seq, "the original seq")
	require.False(t, again.results[1].Duplicate)
	require.True(t, again.results[2].Duplicate)
	require.Equal(t, first.results[1].Seq, again.results[2].Seq)

	stored := streamEvents(t, b.str)
	require.Len(t, stored["keep-1"], 1, "one copy in the stream")
	require.Len(t, stored["keep-2"], 1)
	require.Len(t, stored["new-3"], 1)

	// Past the retention the id is new again.
	_, err := pool.Exec(context.Background(), `UPDATE ingest.event_ids SET recorded_at = now() - interval '25 hours' WHERE id = 'keep-1'`)
	require.NoError(t, err)
	late := postJSON(t, b, b.key, event("keep-1", 1))
	require.Equal(t, http.StatusAccepted, late.status)
	require.False(t, late.results[0].Duplicate, "an id past the retention is appended again")
}

// TestSingleEventResendAfterStreamWindowIsDuplicate: single-event requests
// are appended independently of one another (pipelined plain publishes),
// and the table records and finds their ids as it does a batch's.
func TestSingleEventResendAfterStreamWindowIsDuplicate(t *testing.T) {
	t.Parallel()
	var pool *pgxpool.Pool
	b := setupWith(t, stream.Config{Duplicates: window}, func(c *ingest.Config, p *pgxpool.Pool) {
		c.IDs, c.IdempotencyRetention, pool = p, 24*time.Hour, p
	})
	first := postJSON(t, b, b.key, event("single-1", 1))
	require.Equal(t, http.StatusAccepted, first.status)
	waitRecorded(t, pool, "single-1")
	// A sleep, not a poll: the stream forgets ids on nats-server's own timer, which no clock of ours drives and nothing reports.
	time.Sleep(pastWindow)

	again := postJSON(t, b, b.key, event("single-1", 1))
	require.Equal(t, http.StatusAccepted, again.status)
	require.True(t, again.results[0].Duplicate)
	require.Equal(t, first.results[0].Seq, again.results[0].Seq, "the original seq")
	require.Len(t, streamEvents(t, b.str)["single-1"], 1, "one copy in the stream")
}

// TestResendAfterStreamWindowWithoutTable is the control: with the table
// off, the same re-send is a new append. It shows the window in these
// tests is short enough for the test above to mean something.
func TestResendAfterStreamWindowWithoutTable(t *testing.T) {
	t.Parallel()
	b := setupWith(t, stream.Config{Duplicates: window}, nil)
	first := postJSON(t, b, b.key, event("keep-1", 1))
	require.Equal(t, http.StatusAccepted, first.status)
	// A sleep, not a poll: the stream forgets ids on nats-server's own timer, which no clock of ours drives and nothing reports.
	time.Sleep(pastWindow)
	again := postJSON(t, b, b.key, event("keep-1", 1))
	require.Equal(t, http.StatusAccepted, again.status)
	require.False(t, again.results[0].Duplicate)
	require.NotEqual(t, first.results[0].Seq, again.results[0].Seq)
}

// TestIngestAcceptsWhenTheIDTableIsDown: ingest does not go down with
// Postgres' id table; the stream's window still de-duplicates.
func TestIngestAcceptsWhenTheIDTableIsDown(t *testing.T) {
	t.Parallel()
	closed, err := pgxpool.New(context.Background(), testenv.Database(t))
	require.NoError(t, err)
	closed.Close()
	b := setupWith(t, stream.Config{}, func(c *ingest.Config, _ *pgxpool.Pool) {
		c.IDs, c.IdempotencyRetention = closed, 24*time.Hour
	})
	first := postJSON(t, b, b.key, event("while-down", 1))
	require.Equal(t, http.StatusAccepted, first.status)
	again := postJSON(t, b, b.key, event("while-down", 1))
	require.Equal(t, http.StatusAccepted, again.status)
	require.True(t, again.results[0].Duplicate, "the stream's window de-duplicates")
	require.Equal(t, first.results[0].Seq, again.results[0].Seq)
}

func waitRecorded(t *testing.T, pool *pgxpool.Pool, ids ...string) {
	t.Helper()
	testenv.Poll(t, 10*time.Second, "the appended ids are recorded in ingest.event_ids", func() bool {
		var n int
		require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM ingest.event_ids WHERE id = ANY($1)`, ids).Scan(&n))
		return n == len(ids)
	})
}
