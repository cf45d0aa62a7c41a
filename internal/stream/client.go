package stream

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/eventline/eventline/internal/config"
)

// DefaultURL is used when NATS_URL is not set.
const DefaultURL = "nats://127.0.0.1:4222"

// Client is how a binary connects to NATS: the server URL, at most one way
// to authenticate, and TLS. Every binary and the CLI register the same
// flags and environment variables (Register). Secrets are best given in
// the environment: flags show in the process list.
type Client struct {
	// URL is one server URL or several separated by commas. Default
	// DefaultURL. Credentials in it (nats://user:password@host,
	// nats://token@host) work but are discouraged; they are never logged.
	URL string
	// Creds is a .creds file: a user JWT and its nkey seed (decentralized
	// auth).
	Creds string
	// NKey is a file holding a user nkey seed (SU...).
	NKey string
	// User and Password authenticate as a configured user.
	User, Password string
	// Token authenticates with the server's token.
	Token string
	// TLSCA is a PEM file of CA certificates to verify the server with
	// (otherwise the system's roots, when the server requires TLS).
	TLSCA string
	// TLSCert and TLSKey are a PEM client certificate and its key, for
	// servers that verify clients.
	TLSCert, TLSKey string
}

// Register binds the settings to flags and environment variables.
func (c *Client) Register(s *config.Set) {
	s.String(&c.URL, "nats-url", "NATS_URL", DefaultURL, "NATS server URL(s), comma separated")
	s.String(&c.Creds, "nats-creds", "NATS_CREDS", "", "NATS credentials file (user JWT and seed)")
	s.String(&c.NKey, "nats-nkey", "NATS_NKEY", "", "file holding a NATS user nkey seed")
	s.String(&c.User, "nats-user", "NATS_USER", "", "NATS user name")
	s.String(&c.Password, "nats-password", "NATS_PASSWORD", "", "NATS password (prefer the environment variable)")
	s.String(&c.Token, "nats-token", "NATS_TOKEN", "", "NATS token (prefer the environment variable)")
	s.String(&c.TLSCA, "nats-tls-ca", "NATS_TLS_CA", "", "PEM file of CA certificates that verify the NATS server")
	s.String(&c.TLSCert, "nats-tls-cert", "NATS_TLS_CERT", "", "PEM client certificate for NATS (with NATS_TLS_KEY)")
	s.String(&c.TLSKey, "nats-tls-key", "NATS_TLS_KEY", "", "PEM key of NATS_TLS_CERT")
}

// Redacted is the URL as it may be logged: user information replaced.
func (c Client) Redacted() string {
	raw := c.URL
	if raw == "" {
		raw = DefaultURL
	}
	var out []string
	for _, s := range strings.Split(raw, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			out = append(out, "(a URL that does not parse)")
			continue
		}
		if u.User != nil {
			u.User = url.User("redacted")
		}
		out = append(out, u.String())
	}
	return strings.Join(out, ",")
}

// urlHasUser tells whether a URL carries credentials. A URL that does not
// parse is an error that does not repeat it (it may hold a password).
func (c Client) urlHasUser() (bool, error) {
	has := false
	for i, s := range strings.Split(c.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Host == "" {
			return false, fmt.Errorf("NATS_URL: URL %d is not a URL such as nats://host:4222 (not repeated here: it may hold a password)", i+1)
		}
		has = has || u.User != nil
	}
	return has, nil
}

// Options returns the nats.go options for authentication and TLS. It
// refuses more than one way to authenticate, a password without a user,
// and half a client certificate.
func (c Client) Options() ([]nats.Option, error) {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	inURL, err := c.urlHasUser()
	if err != nil {
		return nil, err
	}
	var ways []string
	var opts []nats.Option
	if inURL {
		ways = append(ways, "credentials in NATS_URL")
	}
	if c.Creds != "" {
		ways = append(ways, "NATS_CREDS")
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	if c.NKey != "" {
		ways = append(ways, "NATS_NKEY")
		o, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY: read the seed in %s: %w", c.NKey, err)
		}
		opts = append(opts, o)
	}
	if c.Password != "" && c.User == "" {
		return nil, errors.New("NATS_PASSWORD is set without NATS_USER")
	}
	if c.User != "" {
		ways = append(ways, "NATS_USER")
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.Token != "" {
		ways = append(ways, "NATS_TOKEN")
		opts = append(opts, nats.Token(c.Token))
	}
	if len(ways) > 1 {
		return nil, fmt.Errorf("NATS: set one way to authenticate, not %s", strings.Join(ways, " and "))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, errors.New("NATS_TLS_CERT and NATS_TLS_KEY go together: set both or neither")
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	return opts, nil
}

// InboxPrefix is the inbox prefix service's connections use: replies to
// its requests come there, and its NATS identity may subscribe to nothing
// else.
func InboxPrefix(service string) string { return "_INBOX_" + service }

// Connect opens a NATS connection for service that reconnects forever,
// logging each disconnect and reconnect. Its inbox prefix is
// InboxPrefix(service); name identifies the connection in server
// monitoring. Neither the connection's logs nor its errors carry a secret
// of the URL. extra options go last (they win).
func Connect(c Client, service, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	auth, err := c.Options()
	if err != nil {
		return nil, err
	}
	if c.URL == "" {
		c.URL = DefaultURL
	}
	opts := append([]nats.Option{
		nats.Name(name),
		nats.CustomInboxPrefix(InboxPrefix(service)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(false),
		// No reconnect buffer: while disconnected, a publish fails at once
		// (ingest answers 503) instead of being replayed later, when a
		// half-sent atomic batch would only occupy a server batch slot.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed it
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", "server", c.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Error("nats error", "error", err)
		}),
	}, auth...)
	nc, err := nats.Connect(c.URL, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s as %s: %w", c.Redacted(), c.who(), err)
	}
	return nc, nil
}

// who says how the client authenticates, for errors.
func (c Client) who() string {
	switch {
	case c.Creds != "":
		return "the user in " + c.Creds
	case c.NKey != "":
		return "the nkey in " + c.NKey
	case c.User != "":
		return "user " + c.User
	case c.Token != "":
		return "a token"
	}
	if has, _ := c.urlHasUser(); has {
		return "the user in NATS_URL"
	}
	return "nobody (no NATS credentials set)"
}
