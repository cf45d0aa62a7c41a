package notifier

import (
	"context"
	"fmt"
	"log/slog"
	"net/mail"
	"net/url"
	"time"

	"github.com/eventline/eventline/api"
	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/internal/lifecycle"
	"github.com/eventline/eventline/internal/observe"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/stream"
)

// AppConfig is everything the notifier binary reads from flags and
// environment.
type AppConfig struct {
	HTTPAddr, AdminAddr, DatabaseURL, LogLevel string
	NATS                                       stream.Client // as identity notifier (deploy/nats)
	Service                                    Config
	SMTPURL                                    string
	SMTPTimeout                                time.Duration
	UnsubscribeSecret                          string
	ShutdownTimeout                            time.Duration
}

// Register binds the settings to flags and environment variables.
func (c *AppConfig) Register(s *config.Set) {
	s.String(&c.HTTPAddr, "http-addr", "HTTP_ADDR", ":8083", "notification API listen address")
	s.String(&c.AdminAddr, "admin-addr", "ADMIN_ADDR", ":9093", "admin listen address (/livez, /readyz, /metrics)")
	c.NATS.Register(s)
	s.String(&c.DatabaseURL, "database-url", "DATABASE_URL", postgres.DefaultURL, "Postgres URL")
	s.String(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	s.Int(&c.Service.Batch, "batch", "NOTIFIER_BATCH", 500, "most events per inbox transaction")
	s.Int(&c.Service.Inflight, "inflight", "NOTIFIER_INFLIGHT", 2, "inbox transactions of unrelated batches running at once (they commit in stream order)")
	s.Duration(&c.Service.Linger, "linger", "NOTIFIER_LINGER", DefaultLinger, "how long a batch that is not full waits for more events before its inbox transaction starts, when none runs; negative: no wait")
	s.Duration(&c.Service.DedupRetention, "dedup-retention", "NOTIFIER_DEDUP_RETENTION", 30*24*time.Hour, "how long the de-duplication key of an applied event is kept")
	s.String(&c.SMTPURL, "smtp-url", "SMTP_URL", "", "SMTP server for digests: smtp://[user:pass@]host:port (STARTTLS when offered) or smtps://...; empty: no digests are sent")
	s.Duration(&c.SMTPTimeout, "smtp-timeout", "SMTP_TIMEOUT", 30*time.Second, "bound on one SMTP conversation")
	s.String(&c.Service.Digest.From, "mail-from", "MAIL_FROM", "eventline <notifications@localhost>", "From of digest emails")
	s.String(&c.Service.Digest.PublicURL, "public-url", "PUBLIC_URL", "http://localhost:8083", "public base URL of this API, for unsubscribe links")
	s.String(&c.UnsubscribeSecret, "unsubscribe-secret", "UNSUBSCRIBE_SECRET", "", "key that signs unsubscribe links (required with SMTP_URL; the same on every replica)")
	s.String(&c.Service.Digest.Mailto, "unsubscribe-mailto", "UNSUBSCRIBE_MAILTO", "", "optional address for a mailto: List-Unsubscribe")
	s.String(&c.Service.Digest.GroupURL, "digest-group-url", "DIGEST_GROUP_URL", "", "optional link per group in digests, with {tenant}, {type} and {id}, e.g. https://app.example.com/{type}s/{id}")
	s.Duration(&c.Service.DigestEvery, "digest-interval", "DIGEST_INTERVAL", 30*time.Second, "how often due digests are looked for")
	s.String(&c.Service.UserTokenSecret, "user-token-secret", "USER_TOKEN_SECRET", "", "key that signs the user tokens browsers open the inbox with (at least 16 characters, the same on every notifier and projector replica); empty: API keys only")
	s.Duration(&c.Service.Heartbeat, "sse-heartbeat", "SSE_HEARTBEAT", 15*time.Second, "comment line sent on idle event streams")
	s.Duration(&c.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", 30*time.Second, "how long SIGTERM waits")
}

// digestSetup checks the mail settings and returns the mailer (nil
// without SMTP_URL).
func (c *AppConfig) digestSetup() (Mailer, error) {
	if c.SMTPURL == "" {
		return nil, nil
	}
	if c.UnsubscribeSecret == "" || len(c.UnsubscribeSecret) < 16 {
		return nil, fmt.Errorf("UNSUBSCRIBE_SECRET: set at least 16 characters (the same on every replica) to send digests with working unsubscribe links")
	}
	if _, err := mail.ParseAddress(c.Service.Digest.From); err != nil {
		return nil, fmt.Errorf("MAIL_FROM %q: not an address such as \"eventline <notifications@example.com>\"", c.Service.Digest.From)
	}
	if u, err := url.Parse(c.Service.Digest.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("PUBLIC_URL %q: must be an http(s) URL such as https://notify.example.com", c.Service.Digest.PublicURL)
	}
	c.Service.Digest.Secret = []byte(c.UnsubscribeSecret)
	return NewSMTPMailer(c.SMTPURL, c.SMTPTimeout)
}

// App is the notifier binary.
type App struct {
	*lifecycle.Listening
	cfg AppConfig
	log *slog.Logger
}

// NewApp returns an App; Run starts it.
func NewApp(cfg AppConfig, log *slog.Logger) *App {
	return &App{Listening: lifecycle.NewListening(), cfg: cfg, log: log}
}

// Run starts everything and blocks until ctx ends, then ends event
// streams, stops taking events and lets commits finish.
func (a *App) Run(ctx context.Context) error {
	cfg := a.cfg
	mailer, err := cfg.digestSetup()
	if err != nil {
		return err
	}
	if mailer == nil {
		a.log.Warn("SMTP_URL is not set: digest emails are not sent")
	} else {
		cfg.Service.Mailer = mailer
	}
	tracing, err := observe.StartTracing(ctx, "notifier")
	if err != nil {
		return err
	}
	defer lifecycle.FlushTraces(tracing, a.log)
	cfg.Service.TracerProvider = tracing.Provider
	conns, err := lifecycle.ConnectConsumer(ctx, cfg.DatabaseURL, cfg.NATS, "notifier", a.log)
	if err != nil {
		return err
	}
	defer conns.Close()
	pool, nc, consumerNC, js := conns.Pool, conns.NC, conns.ConsumerNC, conns.JS
	reg := observe.NewRegistry()
	svc, err := NewService(ctx, consumerNC, js, pool, apikey.NewStore(pool, 0), cfg.Service, NewMetrics(reg), a.log)
	if err != nil {
		return err
	}
	mux := httpapi.NewMux()
	svc.Routes(mux)
	mux.Handle("GET /openapi.json", api.Handler(api.Notifier))
	checks := observe.Checks(nc, pool)
	checks["stream"] = stream.NewPresence(js, svc.cfg.Consumer, 0).Check
	checks["inbox_listener"] = func(context.Context) error {
		select {
		case <-svc.Hub().Listening():
			return nil
		default:
			return fmt.Errorf("not listening for inbox changes yet")
		}
	}
	return lifecycle.Serve(ctx, lifecycle.Server{
		Name: "notifier", HTTPAddr: cfg.HTTPAddr, Handler: mux, Log: a.log, Listening: a.Listening,
		Admin: observe.NewAdmin(cfg.AdminAddr, reg, checks), ShutdownTimeout: cfg.ShutdownTimeout,
		OnShutdown: svc.Hub().Close,
	}, svc.Run)
}
