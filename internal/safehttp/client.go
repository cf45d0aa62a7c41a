package safehttp

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"sync"
	"time"
)

// Defaults of [Config] (docs/contract.md §3).
const (
	DefaultTimeout          = 15 * time.Second
	DefaultMaxResponseBytes = 64 << 10
	DefaultUserAgent        = "eventline"
	// DefaultMaxIdleConnsPerHost: see Config.MaxIdleConnsPerHost.
	DefaultMaxIdleConnsPerHost = 512
)

// maxResponseHeaderBytes bounds the status line and headers of a response,
// which MaxResponseBytes does not cover.
const maxResponseHeaderBytes = 64 << 10

// Config is the delivery client's configuration. The zero value is the
// production policy: no private destinations, docs/contract.md §3 limits.
type Config struct {
	// AllowPrivate turns the address policy off: every destination is
	// allowed, loopback and cloud metadata included. For local use only
	// (WEBHOOK_ALLOW_PRIVATE). Default false.
	AllowPrivate bool
	// AllowCIDRs lets destinations in these ranges through although the
	// policy would refuse them, e.g. 10.1.2.0/24 for an internal receiver.
	// IPv4-mapped IPv6 prefixes are treated as their IPv4 form. Default
	// none.
	AllowCIDRs []netip.Prefix
	// Timeout bounds a whole attempt: connect, TLS, request, response
	// headers and reading the (capped) body. Default 15 s.
	Timeout time.Duration
	// MaxResponseBytes is how much of a response body is read; the rest is
	// never read (the connection is closed). Default 64 KiB.
	MaxResponseBytes int64
	// UserAgent is sent on requests that do not set their own, e.g.
	// "eventline/1.4.0". Default "eventline".
	UserAgent string
	// MaxIdleConnsPerHost is how many kept-alive connections to one
	// host:port stay open between requests. Many endpoints often share a
	// host (one receiver service, hooks.slack.com): with fewer idle slots
	// than requests in flight to it, every request past the slots dials a
	// new connection and closes it after. Default 512, the webhooker's
	// default number of attempts in flight.
	MaxIdleConnsPerHost int
	// Resolver resolves host names, for ValidateURL and for every
	// connection. Default net.DefaultResolver. Tests point it at a local DNS
	// server.
	Resolver *net.Resolver
}

// Client delivers HTTP requests to tenant-chosen URLs without reaching
// private addresses, following redirects or reading unbounded responses.
// It is safe for concurrent use and meant to be shared: it pools
// connections per destination.
type Client struct {
	policy    policy
	resolver  *net.Resolver
	transport *http.Transport
	client    *http.Client
	maxBody   int64
	userAgent string
}

// New returns a Client. It fails only on an invalid Config.
func New(cfg Config) (*Client, error) {
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("safehttp: timeout %s is negative", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxResponseBytes < 0 {
		return nil, fmt.Errorf("safehttp: max response bytes %d is negative", cfg.MaxResponseBytes)
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	if cfg.MaxIdleConnsPerHost <= 0 {
		cfg.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	p, err := newPolicy(cfg.AllowPrivate, cfg.AllowCIDRs)
	if err != nil {
		return nil, fmt.Errorf("safehttp: %w", err)
	}

	dialer := &net.Dialer{
		Timeout:   cfg.Timeout,
		KeepAlive: 30 * time.Second,
		Resolver:  cfg.Resolver,
		// The check that matters: it sees the resolved address of every
		// connection, so DNS rebinding cannot get past it.
		Control: p.control,
	}
	transport := &http.Transport{
		// Never a proxy: the dialer would then check the proxy's address,
		// not the destination's. HTTP_PROXY is ignored on purpose.
		Proxy:             nil,
		DialContext:       dialer.DialContext,
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{MinVersion: tls.VersionTLS12},
		// Many endpoints, some receiving many concurrent deliveries: keep
		// enough idle connections that a busy endpoint (or a host shared
		// by many endpoints) is not re-dialled (and re-handshaken) for
		// every event. MaxConnsPerHost stays unlimited; per-endpoint
		// concurrency is the webhooker's to bound.
		MaxIdleConns:           max(1024, 2*cfg.MaxIdleConnsPerHost),
		MaxIdleConnsPerHost:    cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    min(10*time.Second, cfg.Timeout),
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
	}
	return &Client{
		policy:    p,
		resolver:  cfg.Resolver,
		transport: transport,
		client: &http.Client{
			Transport: transport,
			// A 3xx is a failed delivery (docs/contract.md §3), and following it
			// would let a public endpoint send us anywhere: return it as
			// the response instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Timeout:       cfg.Timeout,
		},
		maxBody:   cfg.MaxResponseBytes,
		userAgent: cfg.UserAgent,
	}, nil
}

// Result is what came back from one attempt.
type Result struct {
	// StatusCode is 0 when no response was received.
	StatusCode int
	// Header is the response header, nil when no response was received.
	Header http.Header
	// Body is at most MaxResponseBytes of the response body.
	Body []byte
	// Truncated reports whether the body was longer than Body.
	Truncated bool
	// Duration is the time from sending the request to having read Body
	// (or failed).
	Duration time.Duration
}

// Do sends req, bounded by ctx and the configured timeout, and reads at
// most MaxResponseBytes of the response body; the body is then closed
// without reading the rest. Redirects are not followed: a 3xx is returned
// like any other response.
//
// The error is nil whenever a response was received and read, whatever its
// status; pass the error and Result.StatusCode to [Classify] to decide
// whether the attempt succeeded. When reading the body fails the Result
// still holds the status and the part of the body that was read.
func (c *Client) Do(ctx context.Context, req *http.Request) (Result, error) {
	var hs handshakeRecorder
	// A shallow copy: the caller's header is copied only when a
	// User-Agent has to be added (a deep Clone of every request showed in
	// the webhooker's allocation profiles).
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{TLSHandshakeDone: hs.done}))
	if req.Header.Get("User-Agent") == "" {
		h := req.Header.Clone()
		if h == nil {
			h = http.Header{}
		}
		h.Set("User-Agent", c.userAgent)
		req.Header = h
	}

	start := time.Now()
	resp, err := c.client.Do(req)
	if err != nil {
		if hs.failed() {
			err = &tlsHandshakeError{err: err}
		}
		return Result{Duration: time.Since(start)}, err
	}
	defer resp.Body.Close()
	// One byte more than the limit tells whether the body was cut. Closing
	// the body before EOF makes the transport drop the connection rather
	// than drain the rest.
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	res := Result{
		StatusCode: resp.StatusCode,
		Header:     resp.Header,
		Body:       body,
		Duration:   time.Since(start),
	}
	if int64(len(body)) > c.maxBody {
		res.Body, res.Truncated = body[:c.maxBody], true
	}
	if err != nil {
		return res, fmt.Errorf("read response body: %w", err)
	}
	return res, nil
}

// CloseIdleConnections closes pooled connections that are not in use, for
// shutdown.
func (c *Client) CloseIdleConnections() { c.transport.CloseIdleConnections() }

// handshakeRecorder notes a failed TLS handshake. crypto/tls reports most
// handshake failures (alerts sent or received) with unexported types, so
// the trace is how Classify tells them apart from other network errors
// without reading error strings.
type handshakeRecorder struct {
	mu  sync.Mutex
	err error
}

func (h *handshakeRecorder) done(_ tls.ConnectionState, err error) {
	if err != nil {
		h.mu.Lock()
		h.err = err
		h.mu.Unlock()
	}
}

func (h *handshakeRecorder) failed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err != nil
}

// tlsHandshakeError marks an error returned while a TLS handshake failed.
type tlsHandshakeError struct{ err error }

func (e *tlsHandshakeError) Error() string { return e.err.Error() }
func (e *tlsHandshakeError) Unwrap() error { return e.err }
