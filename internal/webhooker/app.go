package webhooker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/eventline/eventline/api"
	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/internal/lifecycle"
	"github.com/eventline/eventline/internal/observe"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/safehttp"
	"github.com/eventline/eventline/internal/secretbox"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/webhooker/attempt"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
	"github.com/eventline/eventline/pkg/events"
)

// AppConfig is everything the webhooker binary reads from flags and
// environment.
type AppConfig struct {
	HTTPAddr, AdminAddr, DatabaseURL, LogLevel string
	NATS                                       stream.Client // as identity webhooker (deploy/nats)
	Service                                    Config
	AllowPrivate                               bool
	AllowCIDRs                                 string // comma-separated
	Timeout                                    time.Duration
	ShutdownTimeout                            time.Duration

	// MaxEndpoints caps each tenant's endpoints (not deleted); 0: no cap
	// (WEBHOOK_MAX_ENDPOINTS).
	MaxEndpoints int
	// SecretKey seals webhook secrets at rest; OldSecretKeys (comma
	// separated) are keys it replaced, still needed to open secrets sealed
	// with them until the start-up re-seal has run.
	SecretKey, OldSecretKeys string
	// PublicURL and PortalFrameAncestors configure the webhook portal
	// (docs/portal.md).
	PublicURL, PortalFrameAncestors string
}

// Register binds the settings to flags and environment variables.
func (c *AppConfig) Register(s *config.Set) {
	s.String(&c.HTTPAddr, "http-addr", "HTTP_ADDR", ":8082", "webhook API listen address")
	s.String(&c.AdminAddr, "admin-addr", "ADMIN_ADDR", ":9092", "admin listen address (/livez, /readyz, /metrics)")
	c.NATS.Register(s)
	s.String(&c.DatabaseURL, "database-url", "DATABASE_URL", postgres.DefaultURL, "Postgres URL")
	s.String(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	s.Bool(&c.AllowPrivate, "allow-private", "WEBHOOK_ALLOW_PRIVATE", false, "allow webhook URLs on loopback and private networks (local use only)")
	s.String(&c.AllowCIDRs, "allow-cidrs", "WEBHOOK_ALLOW_CIDRS", "", "comma-separated CIDRs webhooks may reach although private")
	s.Int(&c.MaxEndpoints, "max-endpoints", "WEBHOOK_MAX_ENDPOINTS", endpoint.DefaultMaxEndpoints, "webhook endpoints (not deleted) a tenant may have; a create beyond it is refused with 422; 0 no cap")
	s.Duration(&c.Timeout, "timeout", "WEBHOOK_TIMEOUT", 15*time.Second, "bound on one delivery attempt")
	s.Duration(&c.Service.Claim, "claim", "WEBHOOK_CLAIM", DefaultClaim, "how long a claim on a delivery lasts unless renewed: a replica renews the claims of what it holds every quarter of this, and another attempts what a SIGKILLed replica held once its claims end")
	s.Int(&c.Service.Handlers, "handlers", "WEBHOOK_FANOUT_HANDLERS", DefaultHandlers, "concurrent fan-out handlers: each holds one event while its first attempts run (their records are group-committed)")
	s.Int(&c.Service.ShareAbove, "share-above", "WEBHOOK_SHARE_ABOVE", DefaultShareAbove, "an event to more endpoints is cut into chunks that every replica's scheduler takes, instead of sent by the replica that took it")
	s.Int(&c.Service.Chunk, "chunk", "WEBHOOK_CHUNK", DefaultChunk, "most endpoints of one chunk of a shared fan-out: a replica takes a chunk while its dispatcher has room for all of it (twice the workers)")
	s.Int(&c.Service.Dispatch.Workers, "workers", "WEBHOOK_WORKERS", 512, "most attempts in flight in this process")
	s.Int(&c.Service.Dispatch.MinWorkers, "min-workers", "WEBHOOK_MIN_WORKERS", 16, "fewest attempts allowed to start at once: between it and the workers, the replica keeps the limit where more in flight would not deliver more per second; equal to the workers, the limit is fixed")
	s.Int(&c.Service.Dispatch.PerEndpoint, "per-endpoint", "WEBHOOK_PER_ENDPOINT", 16, "attempts in flight to one endpoint")
	s.Int(&c.Service.Dispatch.DefaultRate, "default-rate", "WEBHOOK_DEFAULT_RATE", 0, "deliveries per second to an endpoint without its own rate_limit; 0 unlimited")
	s.Int(&c.Service.FailingAfter, "failing-after", "WEBHOOK_FAILING_AFTER", delivery.DefaultFailingAfter, "consecutive failed attempts of an endpoint announced as a webhook.attempt_failing event, once per failing streak")
	s.Duration(&c.Service.Retention, "retention", "WEBHOOK_RETENTION", 30*24*time.Hour, "how long the delivery log is kept")
	s.Duration(&c.Service.FirstAttempt.Wait, "first-attempt-wait", "WEBHOOK_FIRST_ATTEMPT_WAIT", 50*time.Millisecond,
		"how long the fan-out waits, without an attempt of the event finishing or its endpoints answering another, to record first attempts with their outcome; 0 records every delivery before its first attempt")
	s.Duration(&c.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", 30*time.Second, "how long SIGTERM waits")
	s.String(&c.SecretKey, "secret-key", "EVENTLINE_SECRET_KEY", "", "base64 of 32 random bytes that seals webhook secrets at rest (required; prefer the environment variable, flags show in ps)")
	s.String(&c.PublicURL, "public-url", "PUBLIC_URL", "", "base URL browsers reach this API at, for the links of portal tokens; default: the URL of the request")
	s.String(&c.PortalFrameAncestors, "portal-frame-ancestors", "PORTAL_FRAME_ANCESTORS", "*", "who may embed /portal in a frame (a CSP frame-ancestors source list, e.g. https://app.example.com)")
	s.String(&c.OldSecretKeys, "old-secret-keys", "EVENTLINE_OLD_SECRET_KEYS", "", "comma-separated keys EVENTLINE_SECRET_KEY replaced; secrets sealed with them are re-sealed on start")
}

// Keyring parses the secret keys. Without EVENTLINE_SECRET_KEY the
// webhooker refuses to start: there is no insecure default.
func (c AppConfig) Keyring() (*secretbox.Keyring, error) {
	if strings.TrimSpace(c.SecretKey) == "" {
		return nil, errors.New("EVENTLINE_SECRET_KEY is not set: the webhooker seals webhook secrets at rest with it. " +
			"Generate one with `openssl rand -base64 32`, keep it in your secret store and give the same key to every webhooker replica " +
			"(without it no stored webhook secret can be read). `make run` keeps a local one in .eventline/secret.key")
	}
	var old []string
	for _, k := range strings.Split(c.OldSecretKeys, ",") {
		if k = strings.TrimSpace(k); k != "" {
			old = append(old, k)
		}
	}
	kr, err := secretbox.NewKeyring(c.SecretKey, old...)
	if err != nil {
		return nil, fmt.Errorf("EVENTLINE_SECRET_KEY / EVENTLINE_OLD_SECRET_KEYS: %w", err)
	}
	return kr, nil
}

// NewClient builds the SSRF-safe delivery client from the settings.
func (c AppConfig) NewClient() (*safehttp.Client, error) {
	var cidrs []netip.Prefix
	for _, s := range strings.Split(c.AllowCIDRs, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("WEBHOOK_ALLOW_CIDRS: %q is not a CIDR: %w", s, err)
		}
		cidrs = append(cidrs, p)
	}
	// As many idle connections per host as attempts in flight: endpoints
	// sharing a host then reuse connections instead of re-dialling.
	return safehttp.New(safehttp.Config{AllowPrivate: c.AllowPrivate, AllowCIDRs: cidrs, Timeout: c.Timeout, UserAgent: c.Service.UserAgent,
		MaxIdleConnsPerHost: c.Service.Dispatch.Workers})
}

// App is the webhooker binary.
type App struct {
	*lifecycle.Listening
	cfg AppConfig
	log *slog.Logger
}

// NewApp returns an App; Run starts it.
func NewApp(cfg AppConfig, log *slog.Logger) *App {
	return &App{Listening: lifecycle.NewListening(), cfg: cfg, log: log}
}

// Run starts everything and blocks until ctx ends, then stops taking
// events, lets running attempts finish and logs them.
func (a *App) Run(ctx context.Context) error {
	cfg := a.cfg
	var err error
	if cfg.Service.UserAgent == "" {
		cfg.Service.UserAgent = "eventline/dev"
	}
	if cfg.MaxEndpoints < 0 {
		return fmt.Errorf("WEBHOOK_MAX_ENDPOINTS is %d: give the most endpoints a tenant may have, or 0 for no cap", cfg.MaxEndpoints)
	}
	if cfg.Service.FirstAttempt.Wait == 0 {
		cfg.Service.FirstAttempt.Wait = -1 // WEBHOOK_FIRST_ATTEMPT_WAIT=0: record first
	}
	if cfg.Service.Secrets, err = cfg.Keyring(); err != nil {
		return err
	}
	client, err := cfg.NewClient()
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	tracing, err := observe.StartTracing(ctx, "webhooker")
	if err != nil {
		return err
	}
	defer lifecycle.FlushTraces(tracing, a.log)
	cfg.Service.TracerProvider = tracing.Provider
	conns, err := lifecycle.ConnectConsumer(ctx, cfg.DatabaseURL, cfg.NATS, "webhooker", a.log)
	if err != nil {
		return err
	}
	defer conns.Close()
	pool, nc, fanoutNC, js := conns.Pool, conns.NC, conns.ConsumerNC, conns.JS
	pub, err := events.NewPublisher(nc)
	if err != nil {
		return err
	}
	reg := observe.NewRegistry()
	svc, err := NewService(ctx, fanoutNC, js, pool, attempt.HTTPPoster{Client: client}, pub, cfg.Service, NewMetrics(reg), a.log)
	if err != nil {
		return err
	}
	keys := apikey.NewStore(pool, 0)
	portal, err := NewPortal(keys, PortalConfig{SigningKey: cfg.Service.Secrets.Derive(PortalTokenPrefix), PublicURL: cfg.PublicURL,
		FrameAncestors: cfg.PortalFrameAncestors}, a.log)
	if err != nil {
		return err
	}
	mux := httpapi.NewMux()
	NewAPI(svc.Store(), svc.Ledger(), portal, client, js, nil, a.log).WithMaxEndpoints(cfg.MaxEndpoints).Routes(mux)
	portal.Routes(mux)
	mux.Handle("GET /openapi.json", api.Handler(api.Webhooker))
	checks := observe.Checks(nc, pool)
	checks["stream"] = stream.NewPresence(js, svc.cfg.Consumer, 0).Check
	return lifecycle.Serve(ctx, lifecycle.Server{
		Name: "webhooker", HTTPAddr: cfg.HTTPAddr, Handler: mux, Log: a.log, Listening: a.Listening,
		Admin: observe.NewAdmin(cfg.AdminAddr, reg, checks), ShutdownTimeout: cfg.ShutdownTimeout,
	}, svc.Run)
}
