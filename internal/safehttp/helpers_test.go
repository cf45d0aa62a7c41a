package safehttp

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Only loopback addresses may carry traffic in these tests. Requests towards
// other addresses (10.0.0.1, 169.254.169.254, ...) are made only after
// requireBlocked has shown the policy refuses them, so the dialer's Control
// hook stops them before connect(2).

// testBundle is what setup returns.
type testBundle struct {
	client *Client
	dns    *dnsServer
}

// setup returns a Client built from cfg whose resolver is a DNS server of
// the test's own.
func setup(t *testing.T, cfg Config) *testBundle {
	t.Helper()
	dns := newDNSServer(t)
	cfg.Resolver = dns.resolver()
	c, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	return &testBundle{client: c, dns: dns}
}

// post sends a small webhook-like POST to rawURL.
func (b *testBundle) post(t *testing.T, rawURL string) (Result, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, rawURL, strings.NewReader(`{"id":"e1"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	return b.client.Do(t.Context(), req)
}

// requireBlocked fails the test now unless the client's policy refuses
// every address in addrs: the guard that keeps a broken policy from sending
// packets off this machine.
func (b *testBundle) requireBlocked(t *testing.T, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		require.ErrorIs(t, b.client.policy.check(netip.MustParseAddr(a)), ErrBlocked, "policy must refuse %s before the test dials it", a)
	}
}

// canary is a TCP listener that must not be connected to.
type canary struct {
	ln net.Listener

	mu       sync.Mutex
	accepted []string // remote addresses, in accept order
	notify   chan struct{}
}

// newCanary listens on addr ("127.0.0.1:0", "[::1]:0").
func newCanary(t *testing.T, addr string) *canary {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	c := &canary{ln: ln, notify: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.accepted = append(c.accepted, conn.RemoteAddr().String())
			c.mu.Unlock()
			conn.Close()
			select {
			case c.notify <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return c
}

func (c *canary) port() string {
	_, port, _ := net.SplitHostPort(c.ln.Addr().String())
	return port
}

// requireUntouched proves nobody connected: it connects itself and waits
// until that connection is accepted. The kernel queues connections in
// order, so any earlier one would have been accepted first.
func (c *canary) requireUntouched(t *testing.T) {
	t.Helper()
	conn, err := net.Dial("tcp", c.ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	probe := conn.LocalAddr().String()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		seen := slices.Clone(c.accepted)
		c.mu.Unlock()
		if slices.Contains(seen, probe) {
			require.Equal(t, []string{probe}, seen, "the canary was connected to")
			return
		}
		select {
		case <-c.notify:
		case <-deadline:
			t.Fatal("the canary never accepted the probe connection")
		}
	}
}

// ipv6Loopback reports whether [::1] can be listened on here.
func ipv6Loopback(t *testing.T) bool {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// waitFor receives from ch or fails after d.
func waitFor[T any](t *testing.T, ch <-chan T, d time.Duration) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("nothing received within %s", d)
		panic("unreachable")
	}
}
