// Package pgcluster runs a private PostgreSQL cluster from the local server
// binaries (initdb, pg_ctl): a throwaway one for tests, or a persistent one
// under ./.eventline/pg for `eventline dev`.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// Options say where the cluster lives and how it runs.
type Options struct {
	Dir  string // holds data/, the socket and the log; created if missing
	Port int    // 0 picks a free loopback port
	// Fast turns off fsync, synchronous_commit and full-page writes: for
	// throwaway test clusters only, never for data anyone keeps.
	Fast bool
}

// Cluster is a running private cluster.
type Cluster struct {
	Dir    string
	Port   int
	URL    string // the postgres database as superuser postgres, trust auth
	bin    string
	asUser string
	opts   string // server options (-o)
}

// ErrNoBinaries says the PostgreSQL server binaries are not installed.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries (initdb, pg_ctl) in PATH or /usr/lib/postgresql/*/bin")

// Start initialises the cluster if Dir holds none yet, and starts it. As
// root it runs the server as the postgres user, since initdb refuses root.
func Start(o Options) (*Cluster, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, Port: o.Port, bin: bin}
	if os.Geteuid() == 0 {
		c.asUser = "postgres"
		u, err := user.Lookup(c.asUser)
		if err != nil {
			return nil, fmt.Errorf("running as root and there is no %q user to run the server as: %w", c.asUser, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
		if out, err := c.runAs("test", "-w", dir); err != nil {
			return nil, fmt.Errorf("the server runs as user %q, which cannot write %s (a parent directory is closed to it?): choose a directory it can reach, e.g. under /tmp: %w %s", c.asUser, dir, err, out)
		}
	}
	if c.Port == 0 {
		if c.Port, err = freePort(); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		args := []string{"-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"}
		if o.Fast {
			args = append(args, "--no-sync")
		}
		if out, err := c.run("initdb", args...); err != nil {
			return nil, fmt.Errorf("initdb: %w: %s", err, out)
		}
	}
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c max_connections=300", c.Port, dir)
	if o.Fast {
		opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	c.opts = opts
	if err := c.Start(); err != nil {
		return nil, err
	}
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port)
	return c, nil
}

// Start starts the server again after Stop, with the same options.
func (c *Cluster) Start() error {
	args := []string{"-D", filepath.Join(c.Dir, "data"), "-l", filepath.Join(c.Dir, "log"), "-w", "-t", "60", "-o", c.opts, "start"}
	if out, err := c.run("pg_ctl", args...); err != nil {
		return fmt.Errorf("pg_ctl start: %w: %s (log in %s)", err, out, filepath.Join(c.Dir, "log"))
	}
	return nil
}

// Stop stops the server; mode is smart, fast or immediate (a crash: the
// next start recovers from the WAL).
func (c *Cluster) Stop(mode string) error {
	if out, err := c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", mode, "-w", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %w: %s", err, out)
	}
	return nil
}

// Remove stops the server at once and deletes its directory.
func (c *Cluster) Remove() {
	_ = c.Stop("immediate")
	_ = os.RemoveAll(c.Dir)
}

func (c *Cluster) run(tool string, args ...string) ([]byte, error) {
	return c.runAs(filepath.Join(c.bin, tool), args...)
}

// runAs runs a program as the cluster's user, bounded by pg_ctl's own
// start timeout and some.
func (c *Cluster) runAs(path string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cmd *exec.Cmd
	if c.asUser != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", c.asUser, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	return cmd.CombinedOutput()
}

func findBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", ErrNoBinaries
	}
	return filepath.Dir(matches[len(matches)-1]), nil
}

func freePort() (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
