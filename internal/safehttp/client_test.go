package safehttp

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// allowedConfigs are the two ways an operator lets loopback through.
func allowedConfigs() map[string]Config {
	return map[string]Config{
		"allow private":          {AllowPrivate: true},
		"allow-list 127.0.0.0/8": {AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
	}
}

func TestClientRefusesNonPublicDestinations(t *testing.T) {
	t.Parallel()
	hasIPv6 := ipv6Loopback(t)

	tests := []struct {
		name string
		url  string // {port} is the IPv4 canary's port, {port6} the IPv6 one's
		dns  map[string]string
		ipv6 bool // needs IPv6 on this machine
	}{
		{name: "loopback", url: "http://127.0.0.1:{port}/hook"},
		{name: "IPv4-mapped loopback", url: "http://[::ffff:127.0.0.1]:{port}/hook"},
		{name: "IPv4-mapped loopback in hex", url: "http://[::ffff:7f00:1]:{port}/hook"},
		{name: "this host", url: "http://0.0.0.0:{port}/hook"},
		{name: "name resolving to loopback", url: "http://loopback.test:{port}/hook", dns: map[string]string{"loopback.test": "127.0.0.1"}},
		{name: "cloud metadata", url: "http://169.254.169.254/latest/meta-data/"},
		{name: "name resolving to cloud metadata", url: "http://metadata.test/latest/meta-data/", dns: map[string]string{"metadata.test": "169.254.169.254"}},
		{name: "private", url: "http://10.0.0.1:8080/hook"},
		{name: "name resolving to private", url: "https://internal.test/hook", dns: map[string]string{"internal.test": "10.0.0.1"}},
		{name: "carrier-grade NAT", url: "http://100.64.0.1/hook"},
		{name: "IPv6 loopback", url: "http://[::1]:{port6}/hook", ipv6: true},
		{name: "IPv6 unspecified", url: "http://[::]:{port6}/hook", ipv6: true},
		{name: "name resolving to IPv6 loopback", url: "http://loopback6.test:{port6}/hook", dns: map[string]string{"loopback6.test": "::1"}, ipv6: true},
		{name: "NAT64 form of loopback", url: "http://[64:ff9b::7f00:1]:{port}/hook", ipv6: true},
		{name: "unique-local (AWS IMDSv6)", url: "http://[fd00:ec2::254]/latest/meta-data/", ipv6: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.ipv6 && !hasIPv6 {
				t.Fatalf("this test needs IPv6 loopback (::1) to run its canary; enable IPv6 on lo (sysctl net.ipv6.conf.lo.disable_ipv6=0)")
			}
			b := setup(t, Config{})
			canary4 := newCanary(t, "127.0.0.1:0")
			rawURL := strings.ReplaceAll(tt.url, "{port}", canary4.port())
			var canary6 *canary
			if hasIPv6 {
				canary6 = newCanary(t, "[::1]:0")
				rawURL = strings.ReplaceAll(rawURL, "{port6}", canary6.port())
			}
			u, err := url.Parse(rawURL)
			require.NoError(t, err)
			if addr, ok := tt.dns[u.Hostname()]; ok {
				b.dns.set(u.Hostname(), addr)
				b.requireBlocked(t, addr)
			} else {
				b.requireBlocked(t, u.Hostname())
			}

			require.ErrorIs(t, b.client.ValidateURL(t.Context(), rawURL), ErrBlocked)

			res, err := b.post(t, rawURL)
			require.ErrorIs(t, err, ErrBlocked)
			var blocked *BlockedError
			require.ErrorAs(t, err, &blocked)
			require.Equal(t, ClassBlocked, Classify(err, res.StatusCode))
			require.Zero(t, res.StatusCode)

			canary4.requireUntouched(t)
			if canary6 != nil {
				canary6.requireUntouched(t)
			}
		})
	}
}

func TestClientDNSRebinding(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	canary := newCanary(t, "127.0.0.1:0")
	// Public when the endpoint is created, loopback when it is delivered to.
	var rebound atomic.Bool
	b.dns.setFunc("rebind.test", func() []netip.Addr {
		if rebound.Load() {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		}
		return []netip.Addr{netip.MustParseAddr("93.184.216.34")}
	})
	rawURL := "http://rebind.test:" + canary.port() + "/hook"

	require.NoError(t, b.client.ValidateURL(t.Context(), rawURL))
	rebound.Store(true)
	b.requireBlocked(t, "127.0.0.1")

	res, err := b.post(t, rawURL)
	require.ErrorIs(t, err, ErrBlocked)
	require.Equal(t, ClassBlocked, Classify(err, res.StatusCode))
	canary.requireUntouched(t)
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	for _, code := range []int{301, 302, 303, 307, 308} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			t.Parallel()
			// Everything is allowed, so only the no-redirect rule can keep
			// the client away from the canary.
			b := setup(t, Config{AllowPrivate: true})
			canary := newCanary(t, "127.0.0.1:0")
			target := "http://127.0.0.1:" + canary.port() + "/internal"
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				hits.Add(1)
				w.Header().Set("Location", target)
				w.WriteHeader(code)
				_, _ = io.WriteString(w, "moved")
			}))
			t.Cleanup(srv.Close)

			res, err := b.post(t, srv.URL+"/hook")
			require.NoError(t, err)
			require.Equal(t, code, res.StatusCode)
			require.Equal(t, target, res.Header.Get("Location"))
			require.Equal(t, "moved", string(res.Body))
			require.Equal(t, ClassStatus, Classify(err, res.StatusCode))
			require.EqualValues(t, 1, hits.Load())
			canary.requireUntouched(t)
		})
	}
}

func TestClientSuccess(t *testing.T) {
	t.Parallel()
	for name, cfg := range allowedConfigs() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg.UserAgent = "eventline/1.2.3"
			b := setup(t, cfg)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if r.Method != http.MethodPost || string(body) != `{"id":"e1"}` || r.UserAgent() != "eventline/1.2.3" {
					http.Error(w, "unexpected request", http.StatusBadRequest)
					return
				}
				_, _ = io.WriteString(w, "thanks")
			}))
			t.Cleanup(srv.Close)

			require.NoError(t, b.client.ValidateURL(t.Context(), srv.URL+"/hook"))
			res, err := b.post(t, srv.URL+"/hook")
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, res.StatusCode, string(res.Body))
			require.Equal(t, "thanks", string(res.Body))
			require.False(t, res.Truncated)
			require.Positive(t, res.Duration)
			require.Equal(t, ErrorClass(""), Classify(err, res.StatusCode))
		})
	}
}

func TestClientDefaultUserAgent(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{AllowPrivate: true})
	agents := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		agents <- r.UserAgent()
	}))
	t.Cleanup(srv.Close)

	_, err := b.post(t, srv.URL)
	require.NoError(t, err)
	require.Equal(t, DefaultUserAgent, waitFor(t, agents, 5*time.Second))
}

func TestClientStatusFailure(t *testing.T) {
	t.Parallel()
	for name, cfg := range allowedConfigs() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, cfg)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "boom", http.StatusInternalServerError)
			}))
			t.Cleanup(srv.Close)

			res, err := b.post(t, srv.URL)
			require.NoError(t, err)
			require.Equal(t, http.StatusInternalServerError, res.StatusCode)
			require.Equal(t, "boom\n", string(res.Body))
			require.Equal(t, ClassStatus, Classify(err, res.StatusCode))
		})
	}
}

func TestClientTimeout(t *testing.T) {
	t.Parallel()
	for name, cfg := range allowedConfigs() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg.Timeout = 200 * time.Millisecond
			b := setup(t, cfg)
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				<-release // hangs past the client's timeout
			}))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(release) }) // runs before srv.Close

			start := time.Now()
			res, err := b.post(t, srv.URL)
			require.Error(t, err)
			require.Equal(t, ClassTimeout, Classify(err, res.StatusCode), "%v", err)
			require.Less(t, time.Since(start), 5*time.Second)
		})
	}
}

func TestClientRefused(t *testing.T) {
	t.Parallel()
	for name, cfg := range allowedConfigs() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, cfg)
			res, err := b.post(t, "http://"+closedPort(t)+"/hook")
			require.Error(t, err)
			require.Equal(t, ClassRefused, Classify(err, res.StatusCode), "%v", err)
		})
	}
}

func TestClientReset(t *testing.T) {
	t.Parallel()
	for name, cfg := range allowedConfigs() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, cfg)
			// Accepts, reads the start of the request, then resets.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			done := make(chan struct{})
			go func() {
				defer close(done)
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = conn.Read(make([]byte, 1))
				_ = conn.(*net.TCPConn).SetLinger(0)
				conn.Close()
			}()
			t.Cleanup(func() {
				ln.Close()
				<-done
			})

			res, err := b.post(t, "http://"+ln.Addr().String()+"/hook")
			require.Error(t, err)
			require.Equal(t, ClassReset, Classify(err, res.StatusCode), "%v", err)
		})
	}
}

func TestClientTLSFailures(t *testing.T) {
	t.Parallel()
	quiet := log.New(io.Discard, "", 0)
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })

	tests := []struct {
		name  string
		start func(*httptest.Server) // starts the server
	}{
		{name: "self-signed certificate", start: (*httptest.Server).StartTLS},
		{name: "not TLS at all", start: (*httptest.Server).Start},
		{name: "no common TLS version", start: func(s *httptest.Server) {
			s.TLS = &tls.Config{MaxVersion: tls.VersionTLS11}
			s.StartTLS()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Config{AllowPrivate: true})
			srv := httptest.NewUnstartedServer(ok)
			srv.Config.ErrorLog = quiet
			tt.start(srv)
			t.Cleanup(srv.Close)

			res, err := b.post(t, "https://"+srv.Listener.Addr().String()+"/hook")
			require.Error(t, err)
			require.Equal(t, ClassTLS, Classify(err, res.StatusCode), "%v", err)
		})
	}
}

func TestClientTLSTrusted(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	b.client.transport.TLSClientConfig.RootCAs = pool

	res, err := b.post(t, srv.URL)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, ErrorClass(""), Classify(err, res.StatusCode))
}

func TestClientReadsAtMostMaxResponseBytes(t *testing.T) {
	t.Parallel()
	const size = 10 << 20
	b := setup(t, Config{AllowPrivate: true, Timeout: time.Minute})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)

	start := time.Now()
	res, err := b.post(t, srv.URL)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Len(t, res.Body, DefaultMaxResponseBytes)
	require.True(t, res.Truncated)
	require.Less(t, time.Since(start), 5*time.Second, "reading 64 KiB of a 10 MB response must not wait for the rest")
}

func TestClientClosesEndlessResponse(t *testing.T) {
	t.Parallel()
	const cap = 1 << 30
	b := setup(t, Config{AllowPrivate: true, Timeout: time.Minute, MaxResponseBytes: 1000})
	written := make(chan int, 1)
	writeFailed := make(chan bool, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		n := 0
		for n < cap {
			if _, err := w.Write(chunk); err != nil {
				writeFailed <- true
				written <- n
				return
			}
			n += len(chunk)
		}
		writeFailed <- false
		written <- n
	}))
	t.Cleanup(srv.Close)

	res, err := b.post(t, srv.URL)
	require.NoError(t, err)
	require.Len(t, res.Body, 1000)
	require.True(t, res.Truncated)
	// The client closed the connection instead of draining it: the server's
	// writes fail once the socket buffers are full.
	require.True(t, waitFor(t, writeFailed, 30*time.Second))
	require.Less(t, waitFor(t, written, time.Second), cap)
}

func TestClientAllowListIsNarrow(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	b.requireBlocked(t, "10.0.0.1", "::1", "169.254.169.254")

	res, err := b.post(t, "http://10.0.0.1/hook")
	require.ErrorIs(t, err, ErrBlocked)
	require.Equal(t, ClassBlocked, Classify(err, res.StatusCode))

	if ipv6Loopback(t) {
		canary := newCanary(t, "[::1]:0")
		res, err := b.post(t, "http://[::1]:"+canary.port()+"/hook")
		require.ErrorIs(t, err, ErrBlocked)
		require.Equal(t, ClassBlocked, Classify(err, res.StatusCode))
		canary.requireUntouched(t)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	t.Parallel()
	tests := map[string]Config{
		"invalid CIDR":               {AllowCIDRs: []netip.Prefix{{}}},
		"negative timeout":           {Timeout: -time.Second},
		"negative max response size": {MaxResponseBytes: -1},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := New(cfg)
			require.Error(t, err)
		})
	}
}
