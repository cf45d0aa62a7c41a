// Package console is the operator console (docs/operations.md "Operator
// console"): a page at /console, and the JSON API behind it, that shows an
// installation's stream and per-consumer lag, the readiness of every
// service, dead letters with their reasons (and replays them), rejected
// events per tenant, webhook endpoints with their health, the delivery
// log and any tenant's timelines. It runs inside `eventline dev` and as
// `eventline console` in production.
//
// It is for operators, not tenants: it reads across tenants as the
// database owner and the stream as the NATS admin identity, and it
// authenticates with an operator token (never an API key), exchanged at
// login for a signed session cookie.
package console

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/internal/signedtoken"
)

//go:embed ui
var uiFiles embed.FS

// Cookie is the session cookie's name.
const Cookie = "eventline_console"

// MinTokenLen is the shortest operator token accepted.
const MinTokenLen = 24

// DefaultSession is how long a login lasts.
const DefaultSession = 12 * time.Hour

// Service is one service whose readiness the console shows.
type Service struct {
	Name string
	// ReadyURL is its admin /readyz URL.
	ReadyURL string
}

// Config configures a Console. Pool, JS and OperatorToken are required.
type Config struct {
	// Pool connects as the database owner: the console reads across
	// tenants (row-level security confines the application role only).
	Pool *pgxpool.Pool
	// JS is a JetStream context as the NATS admin identity: stream and
	// consumer info, and reading messages by sequence.
	JS jetstream.JetStream
	// Stream is the events stream's name; default events.StreamName.
	Stream string
	// OperatorToken is the operator credential, at least MinTokenLen
	// characters. Sessions are signed with a key derived from it, so
	// changing it ends every session.
	OperatorToken string
	// Services are the services whose readiness is shown.
	Services []Service
	// Session is how long a login lasts; default DefaultSession.
	Session time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Console serves the operator console.
type Console struct {
	cfg      Config
	sessions *signedtoken.Signer
	token    [sha256.Size]byte
	data     *data
}

// New checks cfg and returns a Console.
func New(cfg Config) (*Console, error) {
	switch {
	case cfg.Pool == nil || cfg.JS == nil:
		return nil, errors.New("console: a database pool and a JetStream context are required")
	case len(cfg.OperatorToken) < MinTokenLen:
		return nil, fmt.Errorf("the operator token has %d characters; it needs at least %d (make one with `openssl rand -base64 32`)", len(cfg.OperatorToken), MinTokenLen)
	}
	if cfg.Session <= 0 {
		cfg.Session = DefaultSession
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	mac := hmac.New(sha256.New, []byte(cfg.OperatorToken))
	mac.Write([]byte("eventline console session"))
	sessions, err := signedtoken.New(mac.Sum(nil), "elc_", cfg.Now)
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, sessions: sessions, token: sha256.Sum256([]byte(cfg.OperatorToken))}
	c.data = newData(cfg)
	return c, nil
}

// Routes registers the console under /console on mux.
func (c *Console) Routes(mux httpapi.Router) {
	files, _ := fs.Sub(uiFiles, "ui")
	page := httpapi.Page(files, "/console", "'none'")
	mux.Handle("GET /console", page)
	mux.Handle("GET /console/{file}", page)
	mux.HandleFunc("POST /console/api/login", c.login)
	mux.HandleFunc("POST /console/api/logout", c.logout)
	api := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, c.require(h)) }
	api("GET /console/api/session", func(w http.ResponseWriter, _ *http.Request) {
		httpapi.JSON(w, http.StatusOK, map[string]any{"operator": true})
	})
	api("GET /console/api/overview", c.data.overview)
	api("GET /console/api/dead-letters", c.data.deadLetters)
	api("POST /console/api/dead-letters/replay", c.data.replay)
	api("GET /console/api/rejected", c.data.rejected)
	api("GET /console/api/endpoints", c.data.endpoints)
	api("GET /console/api/deliveries", c.data.deliveries)
	api("GET /console/api/timeline", c.data.timeline)
	api("GET /console/api/tenants", c.data.tenants)
}

// operator reports whether presented is the operator token, in constant
// time (both sides are hashed first, so their lengths do not show either).
func (c *Console) operator(presented string) bool {
	sum := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(sum[:], c.token[:]) == 1
}

type session struct {
	Operator bool `json:"op"`
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if !jsonRequest(w, r) {
		return
	}
	var in struct {
		Token string `json:"token"`
	}
	if !decode(w, r, &in) {
		return
	}
	if !c.operator(strings.TrimSpace(in.Token)) {
		c.cfg.Log.WarnContext(r.Context(), "console: login refused", "remote_addr", r.RemoteAddr)
		httpapi.Error(w, http.StatusUnauthorized, "that is not the operator token (CONSOLE_TOKEN or the file of --operator-token-file)")
		return
	}
	value, expires, err := c.sessions.Mint(session{Operator: true}, c.cfg.Session)
	if err != nil {
		httpapi.Unavailable(w, time.Second, "could not start a session; retry")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: Cookie, Value: value, Path: "/console", Expires: expires, HttpOnly: true, //nolint:gosec // G124: Secure whenever the browser came over HTTPS; eventline dev serves plain HTTP on loopback
		Secure: secure(r), SameSite: http.SameSiteStrictMode})
	c.cfg.Log.InfoContext(r.Context(), "console: operator logged in", "remote_addr", r.RemoteAddr)
	httpapi.JSON(w, http.StatusOK, map[string]any{"expires_at": expires.UTC()})
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: Cookie, Value: "", Path: "/console", MaxAge: -1, HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode}) //nolint:gosec // G124: as at login
	w.WriteHeader(http.StatusNoContent)
}

// secure reports whether the browser reached the console over HTTPS, so
// the cookie is sent over HTTPS only.
func secure(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}

// require admits a request with a valid session cookie, or with the
// operator token as "Authorization: Bearer" (scripts). A request that
// changes something must be JSON: a form another site posts cannot be,
// and the cookie is SameSite=Strict besides.
func (c *Console) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && !jsonRequest(w, r) {
			return
		}
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			if c.operator(strings.TrimSpace(bearer)) {
				next.ServeHTTP(w, r)
				return
			}
		} else if ck, err := r.Cookie(Cookie); err == nil {
			var s session
			if _, err := c.sessions.Verify(ck.Value, &s); err == nil && s.Operator {
				next.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="eventline console"`)
		httpapi.Error(w, http.StatusUnauthorized, "log in to the console with the operator token")
	})
}

// jsonRequest answers 415 unless the request body is declared JSON.
func jsonRequest(w http.ResponseWriter, r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/json" {
		httpapi.Error(w, http.StatusUnsupportedMediaType, "send Content-Type: application/json")
		return false
	}
	return true
}

// ReadyURLs turns "name=url,name=url" into services, in order.
func ReadyURLs(s string) ([]Service, error) {
	var out []Service
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		name, u, ok := strings.Cut(p, "=")
		if !ok || name == "" || !strings.HasPrefix(u, "http") {
			return nil, fmt.Errorf("%q is not name=http://host:port/readyz", p)
		}
		out = append(out, Service{Name: name, ReadyURL: u})
	}
	return out, nil
}

// ctxTimeout bounds one console query.
func ctxTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 10*time.Second)
}

// OperatorToken returns the operator token: the content of file when set
// (trimmed; the file should be readable by the console's user only), else
// value (CONSOLE_TOKEN).
func OperatorToken(value, file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file) //nolint:gosec // G304: the operator names the file
		if err != nil {
			return "", fmt.Errorf("--operator-token-file: %w", err)
		}
		value = string(b)
	}
	value = strings.TrimSpace(value)
	if value == "" {
		return "", errors.New("no operator token: set CONSOLE_TOKEN or --operator-token-file to a secret of at least 24 characters (`openssl rand -base64 32`)")
	}
	return value, nil
}
