// Package dev is `eventline dev`: every service in one process, with an
// embedded NATS server (JetStream, fsync always) and Postgres from
// DATABASE_URL, localhost:5432 or a private cluster under ./.eventline/pg,
// behind one HTTP address that routes by path as an ingress would.
package dev

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/eventline/eventline/api"
	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/console"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/internal/ingest"
	"github.com/eventline/eventline/internal/lifecycle"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/natsauth/callout"
	"github.com/eventline/eventline/internal/notifier"
	"github.com/eventline/eventline/internal/pgcluster"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/projector"
	"github.com/eventline/eventline/internal/provision"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/webhooker"
)

// Options configure a dev run.
type Options struct {
	Dir         string // state: NATS store, private Postgres, the dev key; default ./.eventline
	HTTPAddr    string // the one public address; default 127.0.0.1:8080
	NATSAddr    string // embedded NATS client address; default 127.0.0.1:4223 (":0" for any free port)
	DatabaseURL string // "" tries localhost:5432, then a private cluster
	Demo        bool   // generate a Fizzy-like stream of activity
	DemoRate    float64
	Stdout      io.Writer  // where the URL and key are printed
	Ready       func(Info) // called once everything serves (optional)
	Log         *slog.Logger
}

// Info says where a running dev installation serves.
type Info struct {
	URL     string // the one public base URL
	NATSURL string
	Key     string // tenant dev, every scope
	// ConsoleToken logs in to the operator console at URL/console.
	ConsoleToken string
	// Routes are the patterns each service serves (by service name), all
	// proxied from URL.
	Routes map[string][]string
}

// Tenant is the tenant of the dev key.
const Tenant = "dev"

const howToGetPostgres = `no PostgreSQL for eventline dev. Do one of:
  - set DATABASE_URL to a server where this user may create a database
  - start a local server on localhost:5432 (Debian: apt-get install postgresql;
    pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)
  - install the PostgreSQL server binaries (initdb, pg_ctl) so eventline dev
    can run a private cluster under %s`

// Run starts everything, prints where it listens, and blocks until ctx
// ends; then it drains every service and stops NATS and a private cluster.
func Run(ctx context.Context, o Options) error {
	if o.Dir == "" {
		o.Dir = ".eventline"
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = "127.0.0.1:8080"
	}
	if o.NATSAddr == "" {
		o.NATSAddr = "127.0.0.1:4223"
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return err
	}
	issuerSeed, issuer, err := calloutIssuer(filepath.Join(o.Dir, "nats-callout.seed"))
	if err != nil {
		return err
	}
	auth := natsauth.Config{Callout: &natsauth.Callout{Issuer: issuer}}
	passwords, err := natsPasswords(filepath.Join(o.Dir, "nats-identities"), auth)
	if err != nil {
		return err
	}
	auth.Passwords = passwords
	ns, err := startNATS(o, auth)
	if err != nil {
		return err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	natsURL := ns.ClientURL()
	client := func(identity string) stream.Client {
		return stream.Client{URL: natsURL, User: identity, Password: passwords[identity]}
	}
	if err := provisionNATS(ctx, client(natsauth.Admin), o.Log); err != nil {
		return err
	}

	dbURL, cluster, err := findPostgres(ctx, o)
	if err != nil {
		return err
	}
	if cluster != nil {
		defer func() {
			if err := cluster.Stop("fast"); err != nil {
				o.Log.Warn("stop the private Postgres cluster", "error", err)
			}
		}()
	}
	key, err := prepareDatabase(ctx, dbURL, filepath.Join(o.Dir, "dev.key"))
	if err != nil {
		return err
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	secretKey, err := devSecretKey(filepath.Join(o.Dir, "secret.key"))
	if err != nil {
		return err
	}
	// Listen first: the notifier's unsubscribe links need the public URL.
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", o.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (set --http-addr / HTTP_ADDR to another address): %w", o.HTTPAddr, err)
	}
	defer l.Close()
	base := "http://" + l.Addr().String()
	callout := ingest.CalloutConfig{IssuerSeed: issuerSeed, AuthPassword: passwords[natsauth.Auth], SysPassword: passwords[natsauth.Sys]}
	svcs := services(client, callout, dbURL, secretKey, base, o.Log)
	var wg sync.WaitGroup
	errc := make(chan error, len(svcs))
	for _, s := range svcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.run(runCtx); err != nil {
				errc <- fmt.Errorf("%s: %w", s.name, err)
				stop()
			}
		}()
	}
	stopAll := func() error {
		stop()
		wg.Wait()
		close(errc)
		var errs []error
		for err := range errc {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	for _, s := range svcs {
		select {
		case <-s.listening.Started():
		case <-runCtx.Done():
			return errors.Join(ctx.Err(), stopAll())
		}
	}

	// Every route of every service, as the service registered it, goes to
	// that service; /openapi.json describes them all.
	mux := httpapi.NewMux()
	for _, s := range svcs {
		target := &url.URL{Scheme: "http", Host: s.listening.Addr().String()}
		proxy := httputil.NewSingleHostReverseProxy(target)
		proxy.FlushInterval = -1 // Server-Sent Events pass straight through
		for _, p := range s.listening.Routes() {
			if p != openAPIRoute {
				mux.Handle(p, proxy)
			}
		}
	}
	mux.Handle(openAPIRoute, api.Handler())
	consoleToken, err := devConsole(ctx, mux, client(natsauth.Admin), dbURL, filepath.Join(o.Dir, "console.token"), svcs, o.Log)
	if err != nil {
		return errors.Join(err, stopAll())
	}
	sink := newSink()
	mux.Handle("POST /dev/webhook-sink", sink)
	mux.Handle("GET /dev/webhook-sink", sink)
	board, user := "b1", "u1"
	if o.Demo {
		board, user = demoBoards[0], DemoUsers[0]
	}
	mux.Handle("GET /dev/components", componentsPage(base, key, user, board))
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { readyz(w, r, svcs) })
	for _, s := range svcs {
		mux.Handle("GET /metrics/"+s.name, metricsProxy(s.listening.AdminAddr().String()))
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()

	fmt.Fprintf(o.Stdout, "eventline dev is running (state in %s)\n", o.Dir)
	fmt.Fprintf(o.Stdout, "  api       %s   (ingest, timelines, notifications, webhooks)\n", base)
	fmt.Fprintf(o.Stdout, "  nats      %s   (producers: an API key as the token, inbox prefix _INBOX.<tenant>; services: users %s, passwords in %s)\n",
		natsURL, strings.Join(auth.RenderedNames(), ", "), filepath.Join(o.Dir, "nats-identities"))
	fmt.Fprintf(o.Stdout, "  postgres  %s\n", redact(dbURL))
	fmt.Fprintf(o.Stdout, "  sink      %s/dev/webhook-sink   (a local webhook receiver; GET lists what it got)\n", base)
	fmt.Fprintf(o.Stdout, "  browser   %s/dev/components?user=%s   (the inbox and timeline components with a user token)\n", base, user)
	fmt.Fprintf(o.Stdout, "  console   %s/console   (operator token in %s)\n", base, filepath.Join(o.Dir, "console.token"))
	fmt.Fprintf(o.Stdout, "  portal    POST %s/v1/portal-tokens with the key below, open the url it returns\n", base)
	if o.Demo {
		fmt.Fprintf(o.Stdout, "demo      boards %s; users %s\n", strings.Join(demoBoards, ", "), strings.Join(DemoUsers, ", "))
	}
	fmt.Fprintf(o.Stdout, "try:\n  curl -X POST %s/v1/events -H \"Authorization: Bearer %s\" -H 'Content-Type: application/json' \\\n"+
		"    -d '{\"action\":\"published\",\"eventable\":{\"type\":\"card\",\"id\":\"c1\"},\"creator\":{\"type\":\"user\",\"id\":\"%s\"},\"parents\":[{\"type\":\"board\",\"id\":\"%s\"}]}'\n"+
		"  curl %s/v1/timelines/board/%s -H \"Authorization: Bearer %s\"\n", base, key, user, board, base, board, key)
	fmt.Fprintf(o.Stdout, "key for tenant %q (scopes ingest,read,admin):\n%s\n", Tenant, key)

	if o.Ready != nil {
		routes := map[string][]string{}
		for _, s := range svcs {
			routes[s.name] = s.listening.Routes()
		}
		o.Ready(Info{URL: base, NATSURL: natsURL, Key: key, ConsoleToken: consoleToken, Routes: routes})
	}
	if o.Demo {
		go func() {
			if err := RunDemo(runCtx, DemoOptions{BaseURL: base, Key: key, Rate: o.DemoRate, SinkURL: base + "/dev/webhook-sink", Log: o.Log}); err != nil && runCtx.Err() == nil {
				o.Log.Error("demo stopped", "error", err)
			}
		}()
	}

	<-runCtx.Done()
	o.Log.Info("eventline dev stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return stopAll()
}

// openAPIRoute serves each service's API description; dev serves the whole.
const openAPIRoute = "GET /openapi.json"

// metricsProxy serves a service's /metrics from its admin address.
// (NewSingleHostReverseProxy joins the target path with the request's, so
// /metrics/ingest stripped to "" became /metrics/, which is a 404.)
func metricsProxy(adminAddr string) http.Handler {
	return &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.Out.URL.Scheme, r.Out.URL.Host, r.Out.URL.Path, r.Out.URL.RawPath = "http", adminAddr, "/metrics", ""
		r.Out.Host = adminAddr
	}}
}

// service is one eventline service run in this process.
type service struct {
	name      string
	listening *lifecycle.Listening
	run       func(context.Context) error
}

// services builds every service with its defaults and environment, on
// loopback ports of its own, each connecting to NATS as its own identity.
func services(client func(identity string) stream.Client, callout ingest.CalloutConfig, dbURL, secretKey, publicURL string, log *slog.Logger) []*service {
	const local = "127.0.0.1:0"
	var (
		ic ingest.Config
		pc projector.AppConfig
		wc webhooker.AppConfig
		nc notifier.AppConfig
	)
	parseDefaults(ic.Register)
	parseDefaults(pc.Register)
	parseDefaults(wc.Register)
	parseDefaults(nc.Register)

	ic.HTTPAddr, ic.AdminAddr, ic.NATS, ic.DatabaseURL = local, local, client(natsauth.Ingest), dbURL
	ic.Callout = callout // tenant producers connect to the embedded NATS with their API keys
	pc.HTTPAddr, pc.AdminAddr, pc.NATS, pc.DatabaseURL = local, local, client(natsauth.Projector), dbURL
	wc.HTTPAddr, wc.AdminAddr, wc.NATS, wc.DatabaseURL = local, local, client(natsauth.Webhooker), dbURL
	nc.HTTPAddr, nc.AdminAddr, nc.NATS, nc.DatabaseURL = local, local, client(natsauth.Notifier), dbURL
	nc.Service.Digest.PublicURL = publicURL
	if nc.UnsubscribeSecret == "" {
		nc.UnsubscribeSecret = secretKey
	}
	wc.PublicURL = publicURL
	// User tokens work in dev out of the box, with a key of their own
	// derived from the dev secret (USER_TOKEN_SECRET, when set, wins).
	if nc.Service.UserTokenSecret == "" {
		nc.Service.UserTokenSecret = "dev-user-tokens:" + secretKey
	}
	pc.UserTokenSecret = nc.Service.UserTokenSecret
	wc.AllowPrivate = true // local receivers are the point of dev
	if wc.SecretKey == "" {
		wc.SecretKey = secretKey
	}
	wc.Service.UserAgent = "eventline/dev"

	ia := ingest.New(ic, log.With("service", "ingest"))
	pa := projector.NewApp(pc, log.With("service", "projector"))
	wa := webhooker.NewApp(wc, log.With("service", "webhooker"))
	na := notifier.NewApp(nc, log.With("service", "notifier"))
	return []*service{
		{name: "ingest", listening: ia.Listening, run: ia.Run},
		{name: "projector", listening: pa.Listening, run: pa.Run},
		{name: "webhooker", listening: wa.Listening, run: wa.Run},
		{name: "notifier", listening: na.Listening, run: na.Run},
	}
}

// parseDefaults fills a service's settings from their defaults and the
// environment (so e.g. PROJECTOR_WORKERS still applies), ignoring flags.
func parseDefaults(register func(*config.Set)) {
	set := config.New("dev")
	register(set)
	if err := set.Parse(nil); err != nil {
		// A malformed variable: keep the defaults rather than fail the
		// whole dev run; the service-specific binary would report it.
		_ = set.FlagSet().Parse(nil)
	}
}

func readyz(w http.ResponseWriter, r *http.Request, svcs []*service) {
	client := &http.Client{Timeout: 2 * time.Second}
	var bad []string
	for _, s := range svcs {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+s.listening.AdminAddr().String()+"/readyz", nil)
		resp, err := client.Do(req)
		if err != nil {
			bad = append(bad, s.name+": "+err.Error())
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			bad = append(bad, fmt.Sprintf("%s: %d", s.name, resp.StatusCode))
		}
	}
	if len(bad) > 0 {
		httpapi.Error(w, http.StatusServiceUnavailable, "not ready: "+strings.Join(bad, "; "))
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// devConsole mounts the operator console on mux, connected as the NATS
// admin and the database owner, showing every service's readiness; its
// token is CONSOLE_TOKEN, else the one kept in file (made up the first
// time). It returns the token. The pool and connection live as long as
// the process.
func devConsole(ctx context.Context, mux httpapi.Router, admin stream.Client, dbURL, file string, svcs []*service, log *slog.Logger) (string, error) {
	token := os.Getenv("CONSOLE_TOKEN")
	if token == "" {
		var err error
		if token, err = secretFile(file, 24); err != nil {
			return "", err
		}
	}
	pool, err := postgres.Open(ctx, dbURL)
	if err != nil {
		return "", err
	}
	nc, err := stream.Connect(admin, natsauth.Admin, "eventline-dev-console", log)
	if err != nil {
		pool.Close()
		return "", err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		pool.Close()
		nc.Close()
		return "", err
	}
	var ready []console.Service
	for _, s := range svcs {
		ready = append(ready, console.Service{Name: s.name, ReadyURL: "http://" + s.listening.AdminAddr().String() + "/readyz"})
	}
	c, err := console.New(console.Config{Pool: pool, JS: js, OperatorToken: token, Services: ready, Log: log.With("service", "console")})
	if err != nil {
		pool.Close()
		nc.Close()
		return "", err
	}
	c.Routes(mux)
	go func() { <-ctx.Done(); nc.Close(); pool.Close() }()
	return token, nil
}

// startNATS starts the embedded server with eventline's accounts and
// identities (internal/natsauth), the same as the shipped configurations
// render, with the dev passwords.
func startNATS(o Options, auth natsauth.Config) (*server.Server, error) {
	host, port, err := net.SplitHostPort(o.NATSAddr)
	if err != nil {
		return nil, fmt.Errorf("--nats-addr %q: %w", o.NATSAddr, err)
	}
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil {
		return nil, fmt.Errorf("--nats-addr %q: bad port", o.NATSAddr)
	}
	if p == 0 {
		p = server.RANDOM_PORT
	}
	opts, err := auth.ServerOptions()
	if err != nil {
		return nil, err
	}
	opts.ServerName, opts.Host, opts.Port = "eventline-dev", host, p
	opts.JetStream, opts.StoreDir, opts.SyncAlways = true, filepath.Join(o.Dir, "nats"), true
	opts.NoLog, opts.NoSigs = true, true
	if _, err := os.Stat(filepath.Join(opts.StoreDir, "jetstream", "$G", "streams", "EVENTS")); err == nil {
		o.Log.Warn("an EVENTS stream of an earlier eventline dev is in NATS's global account; eventline now keeps its stream in account " +
			natsauth.AccountEventline + " and starts a new one there (delete " + o.Dir + " to start clean)")
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not start on %s (is the port taken? set --nats-addr)", o.NATSAddr)
	}
	return ns, nil
}

// natsPasswords returns a password per NATS identity, kept one per file in
// dir (mode 600) and made up the first time. `make run` keeps its
// passwords in the same place.
func natsPasswords(dir string, auth natsauth.Config) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, name := range auth.RenderedNames() {
		p, err := secretFile(filepath.Join(dir, name), 24)
		if err != nil {
			return nil, err
		}
		out[name] = p
	}
	return out, nil
}

// secretFile returns the secret kept in file, or makes one up (hex of n
// random bytes) and keeps it there (mode 600).
func secretFile(file string, n int) (string, error) {
	if b, err := os.ReadFile(file); err == nil && len(strings.TrimSpace(string(b))) > 0 { //nolint:gosec // our own state directory
		return strings.TrimSpace(string(b)), nil
	}
	k := make([]byte, n)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	secret := hex.EncodeToString(k)
	return secret, os.WriteFile(file, []byte(secret+"\n"), 0o600)
}

// calloutIssuer returns the account seed that signs the auth callout's
// answers, and its public key: kept in file (mode 600), made the first time.
func calloutIssuer(file string) (seed, public string, err error) {
	if b, err := os.ReadFile(file); err == nil { //nolint:gosec // our own state directory
		kp, err := callout.ParseIssuer(string(b))
		if err != nil {
			return "", "", fmt.Errorf("%s: %w (delete it to make a new one)", file, err)
		}
		public, err := kp.PublicKey()
		return strings.TrimSpace(string(b)), public, err
	}
	kp, err := nkeys.CreateAccount()
	if err != nil {
		return "", "", err
	}
	raw, err := kp.Seed()
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(file, append(raw, '\n'), 0o600); err != nil {
		return "", "", err
	}
	public, err = kp.PublicKey()
	return string(raw), public, err
}

// provisionNATS creates the stream and the durables as the admin, as
// `eventline migrate` does, with the settings' defaults and environment.
func provisionNATS(ctx context.Context, admin stream.Client, log *slog.Logger) error {
	var pc provision.Config
	parseDefaults(pc.Register)
	nc, err := stream.Connect(admin, natsauth.Admin, "eventline-dev-provision", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	_, err = provision.Run(ctx, nc, pc)
	return err
}

// findPostgres picks DATABASE_URL, else localhost:5432, else a private
// cluster under Dir/pg.
func findPostgres(ctx context.Context, o Options) (string, *pgcluster.Cluster, error) {
	if o.DatabaseURL != "" {
		if err := postgres.EnsureDatabase(ctx, o.DatabaseURL); err != nil {
			return "", nil, fmt.Errorf("DATABASE_URL: %w\n"+howToGetPostgres, err, filepath.Join(o.Dir, "pg"))
		}
		return o.DatabaseURL, nil, nil
	}
	var tried []string
	for _, u := range []string{postgres.DefaultURL, "postgres://postgres@localhost:5432/eventline?sslmode=disable"} {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := postgres.EnsureDatabase(cctx, u)
		cancel()
		if err == nil {
			return u, nil, nil
		}
		tried = append(tried, err.Error())
	}
	dir := filepath.Join(o.Dir, "pg")
	c, err := pgcluster.Start(pgcluster.Options{Dir: dir})
	if err != nil {
		return "", nil, fmt.Errorf("localhost:5432: %s; private cluster: %w\n"+howToGetPostgres, strings.Join(tried, "; "), err, dir)
	}
	u := strings.Replace(c.URL, "/postgres?", "/eventline?", 1)
	if err := postgres.EnsureDatabase(ctx, u); err != nil {
		_ = c.Stop("fast")
		return "", nil, err
	}
	return u, c, nil
}

// prepareDatabase migrates and returns a key for tenant dev with every
// scope: the one saved in keyFile if it still works, else a new one.
func prepareDatabase(ctx context.Context, dbURL, keyFile string) (string, error) {
	pool, err := postgres.Open(ctx, dbURL)
	if err != nil {
		return "", err
	}
	defer pool.Close()
	if _, err := postgres.Migrate(ctx, pool, slog.New(slog.DiscardHandler)); err != nil {
		return "", err
	}
	keys := apikey.NewStore(pool, -1)
	if b, err := os.ReadFile(keyFile); err == nil { //nolint:gosec // our own state directory
		saved := strings.TrimSpace(string(b))
		if k, err := keys.Authenticate(ctx, saved); err == nil && k.Tenant == Tenant {
			return saved, nil
		}
	}
	_, plaintext, err := keys.Create(ctx, apikey.CreateParams{Tenant: Tenant, Scopes: []string{"ingest", "read", "admin"}, Description: "eventline dev"})
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(keyFile, []byte(plaintext+"\n"), 0o600); err != nil {
		return "", err
	}
	return plaintext, nil
}

// devSecretKey returns the key that seals webhook secrets in dev: the one
// kept in file, else a new random one saved there (EVENTLINE_SECRET_KEY,
// when set, wins over both).
func devSecretKey(file string) (string, error) {
	if b, err := os.ReadFile(file); err == nil { //nolint:gosec // our own state directory
		return strings.TrimSpace(string(b)), nil
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	key := base64.StdEncoding.EncodeToString(k)
	return key, os.WriteFile(file, []byte(key+"\n"), 0o600)
}

func redact(dbURL string) string {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil || cfg.Password == "" {
		return dbURL
	}
	return strings.Replace(dbURL, ":"+cfg.Password+"@", ":***@", 1)
}
