package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/stream"
)

// NATSServer is what tests use of either kind of server: the embedded one
// (StartNATS) or a process (StartNATSProcess).
type NATSServer interface {
	URL() string
	// Client is how a service connects as identity (natsauth.Ingest, ...).
	Client(identity string) stream.Client
	// Env is the environment of a binary connecting as identity.
	Env(identity string) []string
	// Connect returns a connection as the admin identity.
	Connect(t testing.TB, opts ...nats.Option) *nats.Conn
	// ConnectAs returns a connection as identity, with its inbox prefix.
	ConnectAs(t testing.TB, identity string, opts ...nats.Option) *nats.Conn
}

var (
	_ NATSServer = (*NATS)(nil)
	_ NATSServer = (*NATSProcess)(nil)
)

// NATSConfig changes how a test's NATS server is set up.
type NATSConfig struct {
	// NoAuth runs the server without accounts, users or permissions, as
	// eventline ran before they existed (the baseline of benchmarks that
	// measure what authentication costs).
	NoAuth bool
	// Auth renders the accounts and identities from this configuration
	// instead of the default one (which is what deploy/nats/auth.conf
	// ships); its Passwords are ignored: every identity gets a random one.
	Auth *natsauth.Config
}

// Identities are a test server's NATS identities and how to connect as
// each of them; both kinds of test server embed it.
type Identities struct {
	// Passwords are the identities' passwords (nil without auth).
	Passwords map[string]string
	url       func() string
}

// Client is how a service connects as identity (natsauth.Ingest, ...).
func (i *Identities) Client(identity string) stream.Client {
	c := stream.Client{URL: i.url()}
	if i.Passwords != nil {
		c.User, c.Password = identity, i.Passwords[identity]
	}
	return c
}

// Env is the environment of a binary connecting as identity.
func (i *Identities) Env(identity string) []string {
	c := i.Client(identity)
	return []string{"NATS_URL=" + c.URL, "NATS_USER=" + c.User, "NATS_PASSWORD=" + c.Password}
}

// Connect returns a connection as the admin identity (it may provision,
// publish and read anything), closed when the test ends.
func (i *Identities) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	return i.ConnectAs(t, natsauth.Admin, opts...)
}

// ConnectAs returns a connection as identity, with that identity's inbox
// prefix and unlimited reconnects (servers get restarted), closed when the
// test ends.
func (i *Identities) ConnectAs(t testing.TB, identity string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	auth, err := i.Client(identity).Options()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	all := append([]nats.Option{nats.CustomInboxPrefix(stream.InboxPrefix(identity)), nats.Name("test-" + identity), nats.MaxReconnects(-1)}, auth...)
	nc, err := nats.Connect(i.url(), append(all, opts...)...)
	if err != nil {
		t.Fatalf("testenv: connect to nats-server as %s: %v", identity, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// NATS is an embedded nats-server for one test, with eventline's accounts
// and identities (internal/natsauth) and a random password per identity,
// unless the test asked for no authentication.
type NATS struct {
	Server *server.Server
	Identities
	auth     *natsauth.Config
	port     int
	storeDir string
}

// URL is the client URL of the server.
func (n *NATS) URL() string { return n.Server.ClientURL() }

// StartNATS starts an embedded nats-server with JetStream, fsync after
// every write (sync_interval: always), its store in t.TempDir(), a random
// loopback port, and eventline's accounts and identities. It is shut down
// when the test ends. Connect returns an admin connection.
func StartNATS(t testing.TB) *NATS { return StartNATSWith(t, NATSConfig{}) }

// StartNATSWith is StartNATS set up as c says.
func StartNATSWith(t testing.TB, c NATSConfig) *NATS {
	t.Helper()
	n := &NATS{port: server.RANDOM_PORT, storeDir: t.TempDir()}
	n.url = n.URL
	if !c.NoAuth {
		auth := natsauth.Config{}
		if c.Auth != nil {
			auth = *c.Auth
		}
		auth.Passwords = newPasswords(auth)
		n.auth, n.Passwords = &auth, auth.Passwords
	}
	n.start(t)
	t.Cleanup(n.Shutdown)
	return n
}

// newPasswords makes up a password for every identity c renders.
func newPasswords(c natsauth.Config) map[string]string {
	out := map[string]string{}
	for _, name := range c.RenderedNames() {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			panic(err)
		}
		out[name] = hex.EncodeToString(b)
	}
	return out
}

func (n *NATS) start(t testing.TB) {
	t.Helper()
	// Fresh options on every start: a server binds the accounts it parsed.
	opts := &server.Options{}
	if n.auth != nil {
		var err error
		if opts, err = n.auth.ServerOptions(); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	opts.ServerName, opts.Host, opts.Port = "eventline-test", "127.0.0.1", n.port
	opts.JetStream, opts.StoreDir, opts.SyncAlways = true, n.storeDir, true
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("testenv: create nats-server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("testenv: nats-server not ready after 10s")
	}
	n.Server = s
	// Keep the port across restarts, so clients reconnect to the same URL.
	n.port = s.Addr().(*net.TCPAddr).Port
}

// Restart shuts the server down and starts it again on the same port and
// store directory.
func (n *NATS) Restart(t testing.TB) {
	t.Helper()
	n.Shutdown()
	n.start(t)
}

// Shutdown stops the server and waits for it to exit.
func (n *NATS) Shutdown() {
	if n.Server != nil {
		n.Server.Shutdown()
		n.Server.WaitForShutdown()
	}
}
