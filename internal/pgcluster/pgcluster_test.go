package pgcluster_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/pgcluster"
)

// TestCrashAndRestartKeepsCommittedRows starts a durable private cluster,
// commits a row, kills the server (pg_ctl stop -m immediate) and starts it
// again on the same directory: the row is there.
func TestCrashAndRestartKeepsCommittedRows(t *testing.T) {
	dir, err := os.MkdirTemp("", "pgcluster-test-") // t.TempDir's parents are closed to the postgres user
	require.NoError(t, err)
	c, err := pgcluster.Start(pgcluster.Options{Dir: dir})
	if err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("start a private cluster (needs the PostgreSQL server binaries: apt-get install postgresql): %v", err)
	}
	t.Cleanup(c.Remove)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	exec := func(sql string) {
		conn, err := pgx.Connect(ctx, c.URL)
		require.NoError(t, err)
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		require.NoError(t, err)
	}
	exec("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
	require.NoError(t, c.Stop("immediate"))
	_, err = pgx.Connect(ctx, c.URL)
	require.Error(t, err, "the server is down")

	again, err := pgcluster.Start(pgcluster.Options{Dir: dir, Port: c.Port})
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, again.URL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var v int
	require.NoError(t, conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v))
	require.Equal(t, 42, v)
}
