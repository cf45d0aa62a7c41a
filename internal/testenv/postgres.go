package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/pgcluster"
	"github.com/eventline/eventline/internal/postgres"
)

const howToGetPostgres = `no PostgreSQL server for the tests. Do one of:
  - set DATABASE_URL to a server where this user may CREATE DATABASE, e.g.
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
  - start the local one: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start
  - install the PostgreSQL server binaries (apt-get install postgresql) so the
    tests can start a throwaway cluster with initdb/pg_ctl`

var (
	pgOnce     sync.Once
	pgAdminURL string
	pgErr      error
	pgCluster  *pgcluster.Cluster
	tplOnce    sync.Once
	tplName    string
	tplErr     error
)

// Main runs the tests of a package and stops a throwaway Postgres cluster
// if one was started. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if pgCluster != nil {
		pgCluster.Remove()
	}
	os.Exit(code)
}

// Database creates a fresh database with every migration applied, drops it
// when the test ends, and returns its URL.
func Database(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := adminURL(t)
	tpl := template(t, admin)
	name := "t_" + randomHex(8)
	conn := connect(t, ctx, admin)
	defer conn.Close(ctx)
	// CREATE DATABASE fails while another session is briefly connected to the
	// template; retry a few times.
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		_, err = conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, tpl))
		if err == nil || !strings.Contains(err.Error(), "being accessed by other users") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("testenv: create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Logf("testenv: drop %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("testenv: drop %s: %v", name, err)
		}
	})
	return withDatabase(t, admin, name)
}

// Pool opens a pool on a fresh migrated database (see Database), closed
// when the test ends.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	url := Database(t)
	pool, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func adminURL(t testing.TB) string {
	t.Helper()
	pgOnce.Do(func() { pgAdminURL, pgErr = findPostgres() })
	if pgErr != nil {
		t.Fatalf("testenv: %v", pgErr)
	}
	return pgAdminURL
}

func findPostgres() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if url := os.Getenv("DATABASE_URL"); url != "" {
		if err := ping(ctx, url); err != nil {
			return "", fmt.Errorf("DATABASE_URL is set but unusable (%w)\n%s", err, howToGetPostgres)
		}
		return url, nil
	}
	var tried []string
	for _, url := range []string{
		"postgres://localhost:5432/postgres?sslmode=disable",
		"postgres://postgres@localhost:5432/postgres?sslmode=disable",
	} {
		err := ping(ctx, url)
		if err == nil {
			return url, nil
		}
		tried = append(tried, err.Error())
	}
	c, err := startThrowawayCluster()
	if err != nil {
		return "", fmt.Errorf("localhost:5432 is not usable (%s) and a throwaway cluster could not be started (%w)\n%s",
			strings.Join(tried, "; "), err, howToGetPostgres)
	}
	pgCluster = c
	return c.URL, nil
}

func ping(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return errors.New("the user may not CREATE DATABASE")
	}
	return nil
}

// template returns a database with every migration applied, created once
// per migration set and shared by concurrent test processes.
func template(t testing.TB, admin string) string {
	t.Helper()
	tplOnce.Do(func() { tplName, tplErr = makeTemplate(admin) })
	if tplErr != nil {
		t.Fatalf("testenv: %v", tplErr)
	}
	return tplName
}

func makeTemplate(admin string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := "eventline_tpl_" + postgres.MigrationsHash()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	// Serialise template creation across test processes.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(7261001)"); err != nil {
		return "", err
	}
	defer func() { _, _ = conn.Exec(context.Background(), "SELECT pg_advisory_unlock(7261001)") }()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_build"
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+building+" WITH (FORCE)"); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+building); err != nil {
		return "", fmt.Errorf("create template database: %w", err)
	}
	pool, err := pgxpool.New(ctx, withDatabase(nil, admin, building))
	if err != nil {
		return "", err
	}
	_, err = postgres.Migrate(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
	pool.Close()
	if err != nil {
		return "", fmt.Errorf("migrate template database: %w", err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", building, name)); err != nil {
		return "", fmt.Errorf("rename template database: %w", err)
	}
	return name, nil
}

func connect(t testing.TB, ctx context.Context, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("testenv: connect to Postgres: %v\n%s", err, howToGetPostgres)
	}
	return conn
}

// withDatabase returns url with its database replaced by name.
func withDatabase(t testing.TB, url, name string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		if t != nil {
			t.Fatalf("testenv: parse %q: %v", url, err)
		}
		return url
	}
	u := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", cfg.User, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), name)
	if strings.HasPrefix(cfg.Host, "/") { // unix socket
		u = fmt.Sprintf("postgres://%s@/%s?host=%s&port=%d&sslmode=disable", cfg.User, name, cfg.Host, cfg.Port)
	}
	return u
}

func randomHex(n int) string { return hex.EncodeToString(randomBytes(n)) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func startThrowawayCluster() (*pgcluster.Cluster, error) {
	dir, err := os.MkdirTemp("", "eventline-pg-")
	if err != nil {
		return nil, err
	}
	c, err := pgcluster.Start(pgcluster.Options{Dir: dir, Fast: true})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// UnmigratedDatabase returns the URL of a database that does not exist yet
// on the test server (for testing `eventline migrate` from scratch); it is
// dropped when the test ends if something created it.
func UnmigratedDatabase(t testing.TB) string {
	t.Helper()
	admin := adminURL(t)
	name := "t_" + randomHex(8)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if c, err := pgx.Connect(ctx, admin); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = c.Close(ctx)
		}
	})
	return withDatabase(t, admin, name)
}
