package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/pkg/events"
)

const howToGetNATSServer = `this test runs a real nats-server >= 2.12 process. Install it with
  go install github.com/nats-io/nats-server/v2@v2.15.2     (or: make tools)
or point NATS_SERVER_BIN at one`

// NATSServerBinary returns the path of a nats-server >= 2.12 binary: from
// NATS_SERVER_BIN, else $(go env GOPATH)/bin/nats-server. The Debian one in
// PATH is 2.9 and is not used. Without one the test fails saying how to
// install it.
func NATSServerBinary(t testing.TB) string {
	t.Helper()
	var candidates []string
	if p := os.Getenv("NATS_SERVER_BIN"); p != "" {
		candidates = append(candidates, p)
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		candidates = append(candidates, filepath.Join(dir, "bin", "nats-server"))
	}
	var found []string
	for _, p := range candidates {
		out, err := exec.Command(p, "--version").Output()
		if err != nil {
			continue
		}
		v := strings.TrimPrefix(strings.TrimSpace(string(out)), "nats-server: ")
		if events.CheckServerVersion(v) == nil {
			return p
		}
		found = append(found, p+" is "+v)
	}
	t.Fatalf("testenv: no usable nats-server binary (%s)\n%s", strings.Join(found, "; "), howToGetNATSServer)
	return ""
}

// NATSProcess is a nats-server child process with JetStream at
// sync_interval: always, on a fixed loopback port and store directory, so
// it can be killed and started again on the same data. Its accounts,
// identities and permissions are the shipped ones: it includes
// deploy/nats/auth.conf as it is, with a random password per identity in
// the environment.
type NATSProcess struct {
	Bin      string
	Port     int
	StoreDir string
	Identities
	conf   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// ShippedAuthConf is the path of deploy/nats/auth.conf, which every
// shipped server configuration includes.
func ShippedAuthConf() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "deploy", "nats", "auth.conf"), nil
}

// StartNATSProcess starts a nats-server process for the test with the
// shipped identities and stops it when the test ends.
func StartNATSProcess(t testing.TB) *NATSProcess { return StartNATSProcessWith(t, NATSConfig{}) }

// StartNATSProcessWith is StartNATSProcess set up as c says: with c.Auth,
// the identities are rendered from it instead of read from the shipped
// file.
func StartNATSProcessWith(t testing.TB, c NATSConfig) *NATSProcess {
	t.Helper()
	dir := t.TempDir()
	port, err := freePort()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	p := &NATSProcess{Bin: NATSServerBinary(t), Port: port, StoreDir: filepath.Join(dir, "jetstream"), conf: filepath.Join(dir, "nats.conf")}
	p.url = p.URL
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\nserver_name: eventline-test\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", port, p.StoreDir)
	if !c.NoAuth {
		auth := natsauth.Config{}
		var text []byte
		if c.Auth != nil {
			auth = *c.Auth
			auth.Passwords = nil
			text = []byte(auth.Conf())
		} else {
			shipped, err := ShippedAuthConf()
			if err != nil {
				t.Fatalf("testenv: %v", err)
			}
			if text, err = os.ReadFile(shipped); err != nil {
				t.Fatalf("testenv: the shipped NATS identities: %v", err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "auth.conf"), text, 0o600); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		conf += "include ./auth.conf\n"
		p.Passwords = newPasswords(auth)
	}
	if err := os.WriteFile(p.conf, []byte(conf), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	p.Start(t)
	t.Cleanup(func() { p.Kill(t) })
	return p
}

// URL is the client URL.
func (p *NATSProcess) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", p.Port) }

// PID is the running process id, 0 when stopped.
func (p *NATSProcess) PID() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Start runs the server and waits until it accepts connections with
// JetStream ready.
func (p *NATSProcess) Start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(p.Bin, "-c", p.conf)
	cmd.Stdout, cmd.Stderr = nil, nil
	cmd.Env = os.Environ()
	for name, pw := range p.Passwords {
		cmd.Env = append(cmd.Env, natsauth.PasswordEnv(name)+"="+pw)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start nats-server: %v", err)
	}
	p.cmd = cmd
	p.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		admin := p.Client(natsauth.Admin)
		auth, err := admin.Options()
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		nc, err := nats.Connect(p.URL(), append(auth, nats.Timeout(time.Second), nats.CustomInboxPrefix(stream.InboxPrefix(natsauth.Admin)))...)
		if err == nil {
			_, err = nc.Request("$JS.API.INFO", nil, time.Second)
			nc.Close()
			if err == nil {
				return
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("testenv: nats-server exited during start-up")
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("testenv: nats-server on port %d not ready after 30s", p.Port)
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *NATSProcess) Kill(t testing.TB) {
	t.Helper()
	p.signal(t, syscall.SIGKILL)
}

// Stop sends SIGTERM (lame-duck free shutdown) and waits for exit.
func (p *NATSProcess) Stop(t testing.TB) {
	t.Helper()
	p.signal(t, syscall.SIGTERM)
}

func (p *NATSProcess) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if p.cmd == nil {
		return
	}
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("testenv: nats-server did not exit after %v", sig)
		}
	}
	p.cmd = nil
}

// ConnectProcess is p.Connect.
func ConnectProcess(t testing.TB, p *NATSProcess) *nats.Conn {
	t.Helper()
	return p.Connect(t)
}

// Provision runs `eventline migrate --skip-database` as the NATS admin on
// n, as an installation does before it starts the services: it creates
// the stream and every durable, which the services' own identities may
// not.
func Provision(t testing.TB, n NATSServer) {
	t.Helper()
	cmd := exec.Command(BuildBinary(t, "./cmd/eventline"), "migrate", "--skip-database")
	cmd.Env = append(os.Environ(), n.Env(natsauth.Admin)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: eventline migrate --skip-database: %v\n%s", err, out)
	}
}
