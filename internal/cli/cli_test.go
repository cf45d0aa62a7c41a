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

	code, out, _ = run(t, url, "dlq", "replay")
	require.Equal(t, 1, code, "a letter still fails")
	require.Contains(t, out, "seq 4: still failing")

	code, out, _ = run(t, url, "dlq", "list")
	require.Equal(t, 0, code)
	require.NotContains(t, out, "old bug", "replayed letters are hidden without --all")
	code, out, _ = run(t, url, "dlq", "list", "--all")
	require.Equal(t, 0, code)
	require.Contains(t, out, "old bug")
}
