package effbench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/proccpu"
	"github.com/eventline/eventline/internal/stream"
)

// Services are the pipeline's binaries, each run as its own process.
var Services = []string{"ingest", "projector", "notifier", "webhooker"}

// proc is a child process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	url    string // http://HTTP_ADDR (services)
	admin  string // http://ADMIN_ADDR (services)
	log    string
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func start(ctx context.Context, name, dir, bin string, env []string, args ...string) (*proc, error) {
	p := &proc{name: name, exited: make(chan struct{}), log: filepath.Join(dir, name+".log")}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.CommandContext(ctx, bin, args...)
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(syscall.SIGTERM) }
	p.cmd.WaitDelay = 20 * time.Second
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); f.Close(); close(p.exited) }()
	return p, nil
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// freeAddr is a loopback address whose port was free a moment ago; never
// a well-known one (4222, 8080 ...), since the kernel picks it.
func freeAddr(ctx context.Context) (string, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func secret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// natsServer starts nats-server with JetStream at sync_interval: always,
// as every eventline installation runs it (deploy/nats-dev.conf), with
// eventline's identities when passwords is not nil.
func natsServer(ctx context.Context, name, bin, dir string, passwords map[string]string) (*proc, string, error) {
	addr, err := freeAddr(ctx)
	if err != nil {
		return nil, "", err
	}
	sub := filepath.Join(dir, name)
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return nil, "", err
	}
	conf := fmt.Sprintf("listen: %s\nserver_name: %s\nmax_payload: 1MB\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", addr, name, filepath.Join(sub, "js"))
	var env []string
	if passwords != nil {
		if err := os.WriteFile(filepath.Join(sub, "auth.conf"), []byte(natsauth.Config{}.Conf()), 0o600); err != nil {
			return nil, "", err
		}
		conf += "include ./auth.conf\n"
		for id, pw := range passwords {
			env = append(env, natsauth.PasswordEnv(id)+"="+pw)
		}
	}
	cf := filepath.Join(sub, "nats.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		return nil, "", err
	}
	p, err := start(ctx, name, dir, bin, env, "-c", cf)
	if err != nil {
		return nil, "", err
	}
	u := "nats://" + addr
	opts := []nats.Option{nats.Timeout(time.Second)}
	if passwords != nil {
		opts = append(opts, nats.UserInfo(natsauth.Admin, passwords[natsauth.Admin]), nats.CustomInboxPrefix(stream.InboxPrefix(natsauth.Admin)))
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		nc, err := nats.Connect(u, opts...)
		if err == nil {
			_, err = nc.Request("$JS.API.INFO", nil, time.Second)
			nc.Close()
			if err == nil {
				return p, u, nil
			}
		}
		select {
		case <-p.exited:
			return nil, "", fmt.Errorf("%s exited during start-up:\n%s", name, p.tail())
		case <-ctx.Done():
			p.stop()
			return nil, "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, "", fmt.Errorf("%s not ready after 30s", name)
		}
	}
}

// withApp returns the database URL with application_name set, which
// names a service's backends in pg_stat_activity.
func withApp(dbURL, app string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// system is the pipeline as separate processes.
type system struct {
	dir       string
	nats      *proc
	natsURL   string
	svcs      map[string]*proc
	dbURL     string // the benchmark's own database
	key       string
	passwords map[string]string
}

func (s *system) close(ctx context.Context) {
	for _, p := range s.svcs {
		p.stop()
	}
	if s.nats != nil {
		s.nats.stop()
	}
	if s.dbURL != "" {
		_ = postgres.DropDatabase(context.WithoutCancel(ctx), s.dbURL)
	}
}

func startSystem(ctx context.Context, o Options, dir string) (_ *system, err error) {
	s := &system{dir: dir, svcs: map[string]*proc{}, passwords: map[string]string{}}
	defer func() {
		if err != nil {
			s.close(ctx)
		}
	}()
	for _, id := range (natsauth.Config{}).RenderedNames() {
		s.passwords[id] = secret(24)
	}
	if s.nats, s.natsURL, err = natsServer(ctx, "nats-server", o.NATSServer, dir, s.passwords); err != nil {
		return s, err
	}
	name := fmt.Sprintf("eventline_effbench_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6)
	u, err := url.Parse(o.DatabaseURL)
	if err != nil {
		return s, fmt.Errorf("database URL: %w", err)
	}
	u.Path = "/" + name
	if err := postgres.EnsureDatabase(ctx, u.String()); err != nil {
		return s, err
	}
	s.dbURL = u.String()

	eventline := filepath.Join(o.BinDir, "eventline")
	base := []string{"NATS_URL=" + s.natsURL, "DATABASE_URL=" + s.dbURL, "LOG_LEVEL=warn"}
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, eventline, args...)
		cmd.Env = append(append(os.Environ(), base...), "NATS_USER="+natsauth.Admin, "NATS_PASSWORD="+s.passwords[natsauth.Admin])
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("eventline %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	if _, err := run("migrate"); err != nil {
		return s, err
	}
	out, err := run("keys", "create", "--tenant", "bench", "--scopes", "ingest,read,admin", "--description", "eventline bench efficiency")
	if err != nil {
		return s, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	s.key = strings.TrimSpace(lines[len(lines)-1])

	secretKey := make([]byte, 32)
	_, _ = rand.Read(secretKey)
	// A port found free can be taken by another process before the
	// service binds it: a service that exits for that is started again
	// on other ports.
	for _, name := range Services {
		for try := 1; ; try++ {
			httpAddr, err := freeAddr(ctx)
			if err != nil {
				return s, err
			}
			adminAddr, err := freeAddr(ctx)
			if err != nil {
				return s, err
			}
			db, err := withApp(s.dbURL, name)
			if err != nil {
				return s, err
			}
			env := append(append([]string{}, base...),
				"DATABASE_URL="+db, "NATS_USER="+name, "NATS_PASSWORD="+s.passwords[name],
				"HTTP_ADDR="+httpAddr, "ADMIN_ADDR="+adminAddr,
				"INGEST_RATE_LIMIT=0", "WEBHOOK_ALLOW_PRIVATE=true", "PUBLIC_URL=http://"+httpAddr,
				"EVENTLINE_SECRET_KEY="+base64.StdEncoding.EncodeToString(secretKey))
			p, err := start(ctx, name, dir, filepath.Join(o.BinDir, name), env)
			if err != nil {
				return s, err
			}
			p.url, p.admin = "http://"+httpAddr, "http://"+adminAddr
			s.svcs[name] = p
			err = waitReady(ctx, p)
			if err == nil {
				break
			}
			if try >= 3 || !strings.Contains(err.Error(), "address already in use") {
				return s, err
			}
		}
	}
	return s, nil
}

func waitReady(ctx context.Context, p *proc) error {
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.admin+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited during start-up:\n%s", p.name, p.tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after 60s:\n%s", p.name, p.tail())
}

// sample reads the CPU time of every process of the pipeline: the
// services and nats-server by pid, the Postgres backends of the
// benchmark's database by the service their application_name names
// ("pg:<service>", "pg:other" for the rest), the server's background
// processes (walwriter, checkpointer ...: shared with every other
// database of the cluster) as "pg:background", and this process as
// "bench" (load generator, timeline poller, webhook receiver).
func (s *system) sample(ctx context.Context, conn *pgx.Conn) (Sample, error) {
	sm := Sample{CPU: map[string]map[int]time.Duration{}}
	add := func(group string, pid int) error {
		t, err := proccpu.Of(pid)
		if errors.Is(err, os.ErrNotExist) {
			return nil // exited between listing and reading
		}
		if err != nil {
			return err
		}
		if sm.CPU[group] == nil {
			sm.CPU[group] = map[int]time.Duration{}
		}
		sm.CPU[group][pid] = t
		return nil
	}
	rows, err := conn.Query(ctx, `SELECT pid, coalesce(application_name, ''), coalesce(backend_type, ''), datname IS NULL
		FROM pg_stat_activity WHERE (datname = current_database() OR datname IS NULL) AND pid <> pg_backend_pid()`)
	if err != nil {
		return sm, err
	}
	type be struct {
		pid   int
		group string
	}
	var bes []be
	for rows.Next() {
		var pid int32
		var app, typ string
		var noDB bool
		if err := rows.Scan(&pid, &app, &typ, &noDB); err != nil {
			return sm, err
		}
		g := "pg:other"
		switch {
		case noDB || typ != "client backend":
			g = "pg:background"
		case app == "effbench":
			continue // this harness's own connection for sampling
		default:
			for _, svc := range Services {
				if app == svc {
					g = "pg:" + svc
				}
			}
		}
		bes = append(bes, be{pid: int(pid), group: g})
	}
	if err := rows.Err(); err != nil {
		return sm, err
	}
	sm.At = time.Now()
	for _, b := range bes {
		if err := add(b.group, b.pid); err != nil {
			return sm, err
		}
	}
	if err := add("nats-server", s.nats.pid()); err != nil {
		return sm, err
	}
	for name, p := range s.svcs {
		if err := add(name, p.pid()); err != nil {
			return sm, err
		}
	}
	return sm, add("bench", os.Getpid())
}

// exited is an error naming the first process of the pipeline that is no
// longer running: its CPU would silently stop counting.
func (s *system) exited() error {
	ps := []*proc{s.nats}
	for _, name := range Services {
		ps = append(ps, s.svcs[name])
	}
	for _, p := range ps {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited during the benchmark:\n%s", p.name, p.tail())
		default:
		}
	}
	return nil
}
