package testenv

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS is an embedded nats-server for one test.
type NATS struct {
	Server *server.Server
	Opts   *server.Options
}

// URL is the client URL of the server.
func (n *NATS) URL() string { return n.Server.ClientURL() }

// StartNATS starts an embedded nats-server with JetStream, fsync after
// every write (sync_interval: always), its store in t.TempDir() and a
// random loopback port. It is shut down when the test ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	opts := &server.Options{
		ServerName: "eventline-test",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		SyncAlways: true,
		NoLog:      true,
		NoSigs:     true,
	}
	n := &NATS{Opts: opts}
	n.start(t)
	t.Cleanup(n.Shutdown)
	return n
}

func (n *NATS) start(t testing.TB) {
	t.Helper()
	s, err := server.NewServer(n.Opts)
	if err != nil {
		t.Fatalf("testenv: create nats-server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("testenv: nats-server not ready after 10s")
	}
	n.Server = s
	// Keep the port across restarts, so clients reconnect to the same URL.
	n.Opts.Port = s.Addr().(*net.TCPAddr).Port
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

// Connect returns a client connection that is closed when the test ends.
func (n *NATS) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(n.URL(), opts...)
	if err != nil {
		t.Fatalf("testenv: connect to nats-server: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}
