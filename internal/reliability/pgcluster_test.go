//go:build reliability

package reliability

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/testenv"
)

// pgCluster is a private PostgreSQL cluster the test may crash: initdb in
// a temporary directory (as the postgres user when running as root, since
// initdb refuses root), started with pg_ctl, durable settings left at
// their defaults (fsync on).
type pgCluster struct {
	bin, dir, data string
	port           int
	asUser         string
	URL            string // the migrated database "eventline"
}

func startPGCluster(t *testing.T) *pgCluster {
	t.Helper()
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	bin := ""
	if p, err := exec.LookPath("initdb"); err == nil {
		bin = filepath.Dir(p)
	} else if len(matches) > 0 {
		bin = filepath.Dir(matches[len(matches)-1])
	} else {
		t.Fatal("this test crashes its own PostgreSQL cluster and needs the server binaries (initdb, pg_ctl): apt-get install postgresql")
	}
	dir, err := os.MkdirTemp("", "eventline-reliability-pg-")
	require.NoError(t, err)
	c := &pgCluster{bin: bin, dir: dir, data: filepath.Join(dir, "data"), port: mustFreePort(t)}
	if os.Geteuid() == 0 {
		c.asUser = "postgres"
		u, err := user.Lookup(c.asUser)
		require.NoError(t, err, "running as root and there is no postgres user to run initdb as")
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		require.NoError(t, os.Chown(dir, uid, gid))
	}
	out, err := c.run("initdb", "-D", c.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	require.NoError(t, err, "initdb: %s", out)
	t.Cleanup(func() {
		_, _ = c.run("pg_ctl", "-D", c.data, "-m", "immediate", "stop")
		_ = os.RemoveAll(dir)
	})
	c.Start(t)
	admin := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "CREATE DATABASE eventline")
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/eventline?sslmode=disable", c.port)
	pool, err := postgres.Open(ctx, c.URL)
	require.NoError(t, err)
	_, err = postgres.Migrate(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
	pool.Close()
	require.NoError(t, err)
	return c
}

// Start starts the cluster and waits until it accepts connections.
func (c *pgCluster) Start(t *testing.T) {
	t.Helper()
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c max_connections=100", c.port, c.dir)
	out, err := c.run("pg_ctl", "-D", c.data, "-l", filepath.Join(c.dir, "log"), "-o", opts, "-w", "-t", "60", "start")
	require.NoError(t, err, "pg_ctl start: %s", out)
}

// Crash stops the cluster with `pg_ctl stop -m immediate`: every server
// process quits without a checkpoint, and the next start runs crash
// recovery from the WAL.
func (c *pgCluster) Crash(t *testing.T) {
	t.Helper()
	out, err := c.run("pg_ctl", "-D", c.data, "-m", "immediate", "-w", "stop")
	require.NoError(t, err, "pg_ctl stop -m immediate: %s", out)
}

func (c *pgCluster) run(tool string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bin, tool)
	cmd := exec.Command(path, args...)
	if c.asUser != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.asUser, "--", path}, args...)...)
	}
	return cmd.CombinedOutput()
}

func mustFreePort(t *testing.T) int {
	t.Helper()
	addr := testenv.FreeAddr(t)
	_, port, _ := cutLast(addr, ":")
	n, err := strconv.Atoi(port)
	require.NoError(t, err)
	return n
}

func cutLast(s, sep string) (string, string, bool) {
	for i := len(s) - len(sep); i >= 0; i-- {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

// TestPostgresCrash crashes Postgres (pg_ctl stop -m immediate) while the
// projector and the webhooker are writing, keeps it down 10 s, and starts
// it again. No service is restarted.
func TestPostgresCrash(t *testing.T) {
	f := newFaultRun(t, "Postgres `pg_ctl stop -m immediate` during projection, down 10 s, restarted")
	pg := startPGCluster(t)
	p := testenv.StartNATSProcess(t)
	f.s = startSystem(t, systemConfig{NATSURL: p.URL(), NATSPasswords: p.Passwords, DBURL: pg.URL})
	f.l = startLoad(t, f.s, loadConfig{Rate: 1500, Batch: 25})
	probe := f.s.probeReadiness()
	defer probe.close()

	f.l.waitAcked(10000, time.Minute)
	failed := f.l.failures()
	probe.reset()
	pg.Crash(t)
	time.Sleep(10 * time.Second)
	_, notReady := probe.reset()
	pg.Start(t)
	f.clear()
	f.note("%d ingest requests failed while Postgres was down (API keys are read from it); /readyz not-ready answers during the outage: ingest %d, projector %d, notifier %d, webhooker %d",
		f.l.failures()-failed, notReady["ingest"], notReady["projector"], notReady["notifier"], notReady["webhooker"])
	f.l.waitAcked(f.l.ackedCount()+10000, 2*time.Minute)
	f.finish(3 * time.Minute)
}
