package cli_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/cli"
	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func run(t *testing.T, dbURL string, args ...string) (int, string, string) {
	t.Helper()
	t.Setenv("DATABASE_URL", dbURL)
	var out, errOut bytes.Buffer
	code := cli.Run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// setNATSEnv points the commands at n as identity (t.Setenv).
func setNATSEnv(t *testing.T, n *testenv.NATS, identity string) {
	t.Helper()
	for _, kv := range n.Env(identity) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Not parallel: t.Setenv.
func TestMigrateFromScratchAndAgain(t *testing.T) {
	url := testenv.UnmigratedDatabase(t)
	n := testenv.StartNATS(t)
	setNATSEnv(t, n, natsauth.Admin)
	code, out, errOut := run(t, url, "migrate")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "applied 0001_api_keys")
	require.Contains(t, out, "stream EVENTS is provisioned (replicas 1, duplicate window 2m0s)")
	require.Contains(t, out, "durables projector, notifier, webhooker are provisioned")
	js, err := jetstream.New(n.Connect(t))
	require.NoError(t, err)
	for _, durable := range []string{"projector", "notifier", "webhooker"} {
		_, err := js.Consumer(context.Background(), "EVENTS", durable)
		require.NoError(t, err, durable)
	}

	t.Setenv("STREAM_DUPLICATE_WINDOW", "5m")
	t.Setenv("WEBHOOK_MAX_DELIVER", "7")
	code, out, _ = run(t, url, "migrate")
	require.Equal(t, 0, code)
	require.NotContains(t, out, "applied")
	require.Contains(t, out, "schema is at version")
	require.Contains(t, out, "duplicate window 5m0s", "a second run updates what differs")
	c, err := js.Consumer(context.Background(), "EVENTS", "webhooker")
	require.NoError(t, err)
	require.Equal(t, 7, c.CachedInfo().Config.MaxDeliver)

	pool, err := postgres.Open(context.Background(), url)
	require.NoError(t, err)
	defer pool.Close()
	require.NoError(t, postgres.CheckSchema(context.Background(), pool))
}

// TestMigrateNeedsTheNATSAdmin: provisioning as a service identity is
// refused by the server, and migrate says so at once (it does not wait
// for a timeout); --skip-nats migrates the database alone.
func TestMigrateNeedsTheNATSAdmin(t *testing.T) {
	url := testenv.UnmigratedDatabase(t)
	n := testenv.StartNATS(t)
	setNATSEnv(t, n, natsauth.Ingest)
	start := time.Now()
	code, _, errOut := run(t, url, "migrate")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "Permissions Violation")
	require.Contains(t, errOut, "NATS admin identity")
	require.Less(t, time.Since(start), 10*time.Second, "refused at once, not after a timeout")

	t.Setenv("NATS_PASSWORD", "not-the-password")
	code, _, errOut = run(t, url, "migrate")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "Authorization Violation")
	require.NotContains(t, errOut, "not-the-password")

	code, out, errOut := run(t, url, "migrate", "--skip-nats")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "schema is at version")
	require.NotContains(t, out, "stream")
}

func TestKeysCreateListRevoke(t *testing.T) {
	url := testenv.Database(t)
	code, out, errOut := run(t, url, "keys", "create", "--tenant", "acme", "--scopes", "ingest,admin", "--description", "ci")
	require.Equal(t, 0, code, errOut)
	key := lastLine(out)
	require.True(t, strings.HasPrefix(key, "el_"), "the key is the last line: %q", out)

	pool, err := postgres.Open(context.Background(), url)
	require.NoError(t, err)
	defer pool.Close()
	store := apikey.NewStore(pool, -1)
	k, err := store.Authenticate(context.Background(), key)
	require.NoError(t, err)
	require.Equal(t, "acme", k.Tenant)
	require.ElementsMatch(t, []string{"ingest", "admin"}, k.Scopes)
	require.True(t, k.Allows(apikey.ScopeRead), "admin implies read")

	var stored []byte
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT secret_hash FROM auth.api_keys WHERE id = $1", k.ID).Scan(&stored))
	require.NotContains(t, string(stored), key[len("el_")+17:], "only a hash is stored")

	code, out, _ = run(t, url, "keys", "list", "--tenant", "acme")
	require.Equal(t, 0, code)
	require.Contains(t, out, k.ID)
	require.Contains(t, out, "ingest,admin")
	require.NotContains(t, out, key, "list never shows the secret")

	code, _, errOut = run(t, url, "keys", "revoke", k.ID)
	require.Equal(t, 0, code, errOut)
	_, err = store.Authenticate(context.Background(), key)
	require.ErrorIs(t, err, apikey.ErrInvalid)
}

func TestKeysCreateDefaultsAndErrors(t *testing.T) {
	url := testenv.Database(t)
	code, out, _ := run(t, url, "keys", "create", "--tenant", "dev")
	require.Equal(t, 0, code)
	require.Contains(t, out, "scopes ingest,read")

	for _, args := range [][]string{
		{"keys", "create"},
		{"keys", "create", "--tenant", "Bad Tenant"},
		{"keys", "create", "--tenant", "acme", "--scopes", "write"},
		{"keys", "frobnicate"},
		{"keys", "revoke"},
		{"nope"},
	} {
		code, _, errOut := run(t, url, args...)
		require.NotEqual(t, 0, code, "%v", args)
		require.NotEmpty(t, errOut, "%v", args)
	}
}

func TestKeysRefuseOutdatedSchema(t *testing.T) {
	url := testenv.UnmigratedDatabase(t)
	require.NoError(t, postgres.EnsureDatabase(context.Background(), url))
	code, _, errOut := run(t, url, "keys", "create", "--tenant", "acme")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "eventline migrate")
}

func TestDLQListAndReplay(t *testing.T) {
	url := testenv.Database(t)
	ctx := context.Background()
	pool, err := postgres.Open(ctx, url)
	require.NoError(t, err)
	defer pool.Close()
	good := `{"id":"e1","tenant":"acme","action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"},` +
		`"parents":[],"particulars":{},"occurred_at":"2026-01-01T00:00:00Z","recorded_at":"2026-01-01T00:00:00Z","type":"card.closed"}`
	require.NoError(t, deadletter.Add(ctx, pool, deadletter.Letter{Consumer: "projector", StreamSeq: 3, Subject: "events.acme.card.closed", Data: []byte(good), Error: "old bug"}))
	require.NoError(t, deadletter.Add(ctx, pool, deadletter.Letter{Consumer: "projector", StreamSeq: 4, Subject: "events.acme.card.closed", Data: []byte("junk"), Error: "decode stored event"}))

	code, out, errOut := run(t, url, "dlq", "list")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "old bug")
	require.Contains(t, out, "decode stored event")

	code, out, _ = run(t, url, "dlq", "replay", "3")
	require.Equal(t, 0, code)
	require.Contains(t, out, "seq 3: replayed")

	// A letter whose event Postgres still refuses stays poison too, and
	// the letters after it are replayed.
	_, err = pool.Exec(ctx, `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.id = 'e-refused' THEN RAISE EXCEPTION 'refused by the test' USING ERRCODE = '22023'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse BEFORE INSERT ON timeline_g1.events FOR EACH ROW EXECUTE FUNCTION refuse()`)
	require.NoError(t, err)
	for i, id := range []string{"e-refused", "e6"} { // seq 5, then seq 6
		data := strings.Replace(good, `"id":"e1"`, `"id":"`+id+`"`, 1)
		require.NoError(t, deadletter.Add(ctx, pool, deadletter.Letter{Consumer: "projector", StreamSeq: uint64(5 + i), Subject: "events.acme.card.closed", Data: []byte(data), Error: "refused"}))
	}

	code, out, _ = run(t, url, "dlq", "replay")
	require.Equal(t, 1, code, "a letter still fails")
	require.Contains(t, out, "seq 4: still failing")
	require.Contains(t, out, "seq 5: still failing: insert 1 events into timeline_g1: ERROR: refused by the test (SQLSTATE 22023)")
	require.Contains(t, out, "seq 6: replayed")
	require.Contains(t, out, "1 replayed, 2 still failing")
	l, err := deadletter.NewStore(pool).Get(ctx, "projector", 5)
	require.NoError(t, err)
	require.Equal(t, 2, l.Failures)
	require.Contains(t, l.Error, "SQLSTATE 22023")

	code, out, _ = run(t, url, "dlq", "list")
	require.Equal(t, 0, code)
	require.NotContains(t, out, "old bug", "replayed letters are hidden without --all")
	code, out, _ = run(t, url, "dlq", "list", "--all")
	require.Equal(t, 0, code)
	require.Contains(t, out, "old bug")
}

// Every subcommand answers -h and --help with its flags on stdout, exit 0.
func TestSubcommandHelp(t *testing.T) {
	url := testenv.UnmigratedDatabase(t)
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"dev", "--help"}, "-demo"},
		{[]string{"dev", "-h"}, "-http-addr"},
		{[]string{"keys", "create", "--help"}, "-tenant"},
		{[]string{"keys", "list", "--help"}, "-tenant"},
		{[]string{"dlq", "list", "--help"}, "-consumer"},
		{[]string{"dlq", "replay", "-h"}, "-consumer"},
		{[]string{"migrate", "--help"}, "-database-url"},
		{[]string{"bench", "--help"}, "-rate"},
		{[]string{"rebuild", "timelines", "--help"}, "-keep-old"},
	} {
		code, out, errOut := run(t, url, tc.args...)
		require.Equal(t, 0, code, "%v: %s", tc.args, errOut)
		require.Contains(t, out, "Usage: eventline", "%v", tc.args)
		require.Contains(t, out, tc.flag, "%v", tc.args)
		require.Contains(t, out, "(env ", "%v: flags name their environment variable", tc.args)
	}
}

// A misspelt consumer is an error naming the valid ones, not an empty table.
func TestDLQRefusesUnknownConsumer(t *testing.T) {
	url := testenv.Database(t)
	for _, sub := range []string{"list", "replay"} {
		code, out, errOut := run(t, url, "dlq", sub, "--consumer", "projecter")
		require.Equal(t, 2, code, out)
		require.Contains(t, errOut, `no consumer "projecter"`)
		require.Contains(t, errOut, "notifier, projector, webhooker")
		require.Empty(t, out)
	}
}
