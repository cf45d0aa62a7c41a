// Package cli is the eventline operator command: schema migrations and API
// keys, and later dev, replay, dlq and bench (docs/contract.md §4).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/provision"
	"github.com/eventline/eventline/internal/stream"
)

const usage = `eventline: operate an eventline installation.

Usage:
  eventline dev [--demo] [--http-addr 127.0.0.1:8080] [--dir .eventline]
                                    every service in one process with an embedded NATS server and
                                    Postgres from DATABASE_URL, localhost:5432 or ./.eventline/pg;
                                    prints the URL and a key for tenant "dev"
  eventline bench [--rate 1000] [--duration 30s] [--url URL --key KEY]
                                    the whole pipeline under load: p50/p99 from 202 to timeline and
                                    to first webhook attempt; without --url it runs eventline dev in-process
  eventline migrate [--skip-nats | --skip-database]
                                    apply the database migrations, then provision NATS as the NATS
                                    admin identity: create or update the EVENTS stream and every
                                    service's durable (the services only check they exist)
  eventline nats config [--helm] [--callout-issuer A...]
                                    print eventline's NATS accounts, identities and permissions as
                                    a nats-server configuration (deploy/nats/auth.conf) or as Helm values
  eventline nats callout-keys       make the auth callout's key pair (seed for ingest, public key
                                    for the server): tenant producers then connect with API keys
  eventline keys create --tenant T [--scopes ingest,read] [--rate-limit N] [--description D]
                                    create an API key; the key is the last line of output
  eventline keys list [--tenant T]  list active keys (never their secrets)
  eventline keys revoke ID          revoke a key; services stop accepting it within 30s
  eventline dlq list [--consumer C] [--all]
                                    list dead-lettered messages with their errors
  eventline dlq replay [--consumer projector|notifier|webhooker] [SEQ ...]
                                    process dead letters again (all pending, or these stream sequences)
  eventline rejected list [--tenant T] [--all]
                                    list messages that failed validation, once each (tenants see theirs
                                    at GET /v1/rejected-events)
  eventline rejected replay [--tenant T] [SEQ ...]
                                    after a fix, replay rejections (all pending, or these stream
                                    sequences) to every consumer that dead-lettered them
  eventline console [--listen 127.0.0.1:8090] [--operator-token-file F] [--services name=url,...]
                                    the operator console at /console: stream and consumer lag, readiness,
                                    dead letters (replay), rejected events, endpoints, deliveries,
                                    timelines; log in with CONSOLE_TOKEN (needs NATS as the admin identity)
  eventline rebuild timelines [--keep-old] [--drop-delay 5s]
                                    replay the stream into fresh timeline tables while the current
                                    ones serve, then switch over (needs NATS as the admin identity)

Every command takes --database-url (env DATABASE_URL, default ` + postgres.DefaultURL + `).
Commands that use NATS take --nats-url and the credentials and TLS settings of the services
(NATS_URL, NATS_USER/NATS_PASSWORD, NATS_CREDS, NATS_NKEY, NATS_TOKEN, NATS_TLS_CA,
NATS_TLS_CERT/NATS_TLS_KEY); they connect as the NATS admin identity.
`

// command is one top-level command. A group (subs non-empty) is run with
// its subcommand as args[0]; Run checks that subcommand and answers the
// group's --help itself, so this table is the one list of what the CLI
// offers.
type command struct {
	name string
	subs []string
	run  func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{name: "dev", run: func(ctx context.Context, args []string, stdout, _ io.Writer) error { return devCmd(ctx, args, stdout) }},
	{name: "bench", run: func(ctx context.Context, args []string, stdout, _ io.Writer) error {
		return benchCmd(ctx, args, stdout)
	}},
	{name: "migrate", run: migrate},
	{name: "nats", subs: []string{"config", "callout-keys"}, run: func(_ context.Context, args []string, stdout, _ io.Writer) error { return natsCmd(args, stdout) }},
	{name: "keys", subs: []string{"create", "list", "revoke"}, run: func(ctx context.Context, args []string, stdout, _ io.Writer) error { return keys(ctx, args, stdout) }},
	{name: "dlq", subs: []string{"list", "replay"}, run: func(ctx context.Context, args []string, stdout, _ io.Writer) error { return dlq(ctx, args, stdout) }},
	{name: "rejected", subs: []string{"list", "replay"}, run: func(ctx context.Context, args []string, stdout, _ io.Writer) error {
		return rejected(ctx, args, stdout)
	}},
	{name: "console", run: func(ctx context.Context, args []string, stdout, _ io.Writer) error {
		return consoleCmd(ctx, args, stdout)
	}},
	{name: "rebuild", subs: []string{"timelines"}, run: func(ctx context.Context, args []string, stdout, _ io.Writer) error { return rebuild(ctx, args, stdout) }},
}

// Commands lists every command path the CLI accepts: each top-level
// command, and each group's subcommands after it.
func Commands() [][]string {
	var paths [][]string
	for _, c := range commands {
		paths = append(paths, []string{c.name})
		for _, s := range c.subs {
			paths = append(paths, []string{c.name, s})
		}
	}
	return paths
}

func isHelp(arg string) bool {
	return arg == "help" || arg == "-h" || arg == "-help" || arg == "--help"
}

// Run executes one command and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == args[0] })
	if i < 0 {
		fmt.Fprintf(stderr, "eventline: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	cmd, rest := commands[i], args[1:]
	var err error
	switch {
	case len(cmd.subs) == 0:
		err = cmd.run(ctx, rest, stdout, stderr)
	case len(rest) > 0 && isHelp(rest[0]):
		fmt.Fprint(stdout, groupUsage(cmd))
		return 0
	case len(rest) == 0:
		err = usageError{fmt.Sprintf("%s: say %s", cmd.name, orList(cmd.subs))}
	case !slices.Contains(cmd.subs, rest[0]):
		err = usageError{fmt.Sprintf("%s: unknown subcommand %q; say %s", cmd.name, rest[0], orList(cmd.subs))}
	default:
		err = cmd.run(ctx, rest, stdout, stderr)
	}
	var uerr usageError
	var help helpRequested
	switch {
	case err == nil:
		return 0
	case errors.As(err, &help):
		help.print(stdout)
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &uerr):
		fmt.Fprintf(stderr, "eventline: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "eventline: %v\n", err)
		return 1
	}
}

// orList spells words as "a, b or c".
func orList(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// groupUsage is the part of usage about a group's subcommands.
func groupUsage(c command) string {
	return "Usage:\n" + usageEntries("eventline "+c.name) +
		fmt.Sprintf("\nSubcommands: %s. `eventline %s <subcommand> --help` lists a subcommand's flags.\n", strings.Join(c.subs, ", "), c.name)
}

// usageEntries returns the entries of usage for the commands starting
// with prefix: an entry is a line "  eventline ..." and the more indented
// lines under it.
func usageEntries(prefix string) string {
	var b strings.Builder
	in := false
	for line := range strings.SplitSeq(usage, "\n") {
		switch {
		case strings.HasPrefix(line, "  eventline "):
			in = strings.HasPrefix(line+" ", "  "+prefix+" ")
		case !strings.HasPrefix(line, "   "):
			in = false
		}
		if in {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func flags(name string, databaseURL *string) *config.Set {
	set := config.New("eventline " + name)
	set.String(databaseURL, "database-url", "DATABASE_URL", postgres.DefaultURL, "Postgres URL")
	return set
}

// helpRequested is returned by parse for -h or --help: Run prints the
// command's flags to stdout and exits 0.
type helpRequested struct{ set *config.Set }

func (h helpRequested) Error() string { return "help requested" }
func (h helpRequested) Unwrap() error { return flag.ErrHelp }

func (h helpRequested) print(w io.Writer) {
	fs := h.set.FlagSet()
	fmt.Fprintf(w, "Usage: %s [flags]\n", fs.Name())
	if entry := usageEntries(fs.Name()); entry != "" {
		fmt.Fprintf(w, "\n%s", entry)
	}
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if !hasFlags {
		return
	}
	fmt.Fprint(w, "\nFlags (each also read from the environment variable named):\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
}

func parse(set *config.Set, args []string) error {
	set.FlagSet().SetOutput(io.Discard)
	if err := set.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpRequested{set}
		}
		return usageError{err.Error()}
	}
	return nil
}

func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var dbURL string
	var nc stream.Client
	var pc provision.Config
	var skipNATS, skipDB bool
	set := flags("migrate", &dbURL)
	nc.Register(set)
	pc.Register(set)
	set.Bool(&skipNATS, "skip-nats", "EVENTLINE_MIGRATE_SKIP_NATS", false, "only migrate the database")
	set.Bool(&skipDB, "skip-database", "EVENTLINE_MIGRATE_SKIP_DATABASE", false, "only provision NATS")
	if err := parse(set, args); err != nil {
		return err
	}
	if skipNATS && skipDB {
		return usageError{"migrate: --skip-nats and --skip-database leave nothing to do"}
	}
	if !skipDB {
		if err := migrateDatabase(ctx, dbURL, stdout); err != nil {
			return err
		}
	}
	if skipNATS {
		return nil
	}
	return provisionNATS(ctx, nc, pc, stdout, stderr)
}

func migrateDatabase(ctx context.Context, dbURL string, stdout io.Writer) error {
	if err := postgres.EnsureDatabase(ctx, dbURL); err != nil {
		return err
	}
	pool, err := postgres.Open(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := postgres.Migrate(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, name := range applied {
		fmt.Fprintf(stdout, "applied %s\n", name)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "schema is at version %d\n", postgres.LatestVersion())
	return nil
}

// provisionNATS creates or updates the stream and the durables as the
// NATS admin. The server refuses a request the identity may not make with
// an asynchronous permissions violation, not an answer: the first one
// stops provisioning at once with that error.
func provisionNATS(ctx context.Context, c stream.Client, pc provision.Config, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeoutCause(ctx, 30*time.Second, errors.New("NATS did not answer within 30s"))
	defer cancel()
	refused := make(chan error, 1)
	nc, err := stream.Connect(c, natsauth.Admin, "eventline-migrate", log, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			select {
			case refused <- err:
			default:
			}
		}
	}))
	if err != nil {
		return fmt.Errorf("%w (eventline migrate provisions NATS as the admin identity; --skip-nats migrates only the database)", err)
	}
	defer nc.Close()
	type result struct {
		res provision.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := provision.Run(ctx, nc, pc)
		done <- result{res, err}
	}()
	var r result
	select {
	case r = <-done:
	case err := <-refused:
		cancel()
		<-done
		return fmt.Errorf("provision NATS: the server refused: %w; eventline migrate needs the NATS admin identity (NATS_USER=admin)", err)
	}
	if r.err != nil {
		return fmt.Errorf("provision NATS (it needs the admin identity): %w", r.err)
	}
	fmt.Fprintf(stdout, "stream %s is provisioned (replicas %d, duplicate window %s)\n", r.res.Stream.Name, r.res.Stream.Replicas, r.res.Stream.Duplicates)
	fmt.Fprintf(stdout, "durables %s are provisioned\n", strings.Join(r.res.Durables, ", "))
	return nil
}

func keys(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{"keys: say create, list or revoke"}
	}
	var dbURL, tenant, scopes, description string
	var rateLimit int
	set := flags("keys "+args[0], &dbURL)
	switch args[0] {
	case "create":
		set.String(&tenant, "tenant", "EVENTLINE_TENANT", "", "tenant the key belongs to (required)")
		set.String(&scopes, "scopes", "EVENTLINE_SCOPES", "ingest,read", "comma-separated scopes: ingest, read, admin (admin implies the others)")
		set.Int(&rateLimit, "rate-limit", "EVENTLINE_RATE_LIMIT", 0, "events per second for this key; 0 for the service default")
		set.String(&description, "description", "EVENTLINE_DESCRIPTION", "", "what the key is for")
	case "list":
		set.String(&tenant, "tenant", "EVENTLINE_TENANT", "", "only this tenant's keys")
	case "revoke":
	default:
		return usageError{fmt.Sprintf("keys: unknown subcommand %q; say create, list or revoke", args[0])}
	}
	if err := parse(set, args[1:]); err != nil {
		return err
	}
	pool, err := openMigrated(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	store := apikey.NewStore(pool, -1)
	switch args[0] {
	case "create":
		if tenant == "" {
			return usageError{"keys create: --tenant is required"}
		}
		sc, err := apikey.ParseScopes(scopes)
		if err != nil {
			return usageError{"keys create: --scopes: " + err.Error()}
		}
		k, plaintext, err := store.Create(ctx, apikey.CreateParams{Tenant: tenant, Scopes: sc, RateLimit: rateLimit, Description: description})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created key %s for tenant %s with scopes %s; it is shown once, store it now:\n%s\n",
			k.ID, k.Tenant, strings.Join(k.Scopes, ","), plaintext)
	case "list":
		ks, err := store.List(ctx, tenant)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTENANT\tSCOPES\tRATE LIMIT\tDESCRIPTION")
		for _, k := range ks {
			limit := "default"
			if k.RateLimit > 0 {
				limit = fmt.Sprintf("%d/s", k.RateLimit)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Tenant, strings.Join(k.Scopes, ","), limit, k.Description)
		}
		return tw.Flush()
	case "revoke":
		rest := set.FlagSet().Args()
		if len(rest) != 1 {
			return usageError{"keys revoke: give the key id (see `eventline keys list`)"}
		}
		if err := store.Revoke(ctx, rest[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked key %s\n", rest[0])
	}
	return nil
}

// openMigrated opens the database and refuses an out-of-date schema.
func openMigrated(ctx context.Context, dbURL string) (*pgxpool.Pool, error) {
	pool, err := postgres.Open(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	if err := postgres.CheckSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}
