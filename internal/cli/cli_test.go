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
	"github.com/eventline/eventline/internal/consume"
	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
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
	c, err := js.Consumer(context.Background(), "EVENTS", "webhooker")
	require.NoError(t, err)
	require.Equal(t, consume.DefaultAckWait, c.CachedInfo().Config.AckWait, "WEBHOOK_ACK_WAIT's default")

	t.Setenv("STREAM_DUPLICATE_WINDOW", "5m")
	t.Setenv("WEBHOOK_MAX_DELIVER", "7")
	t.Setenv("WEBHOOK_ACK_WAIT", "45s")
	code, out, _ = run(t, url, "migrate")
	require.Equal(t, 0, code)
	require.NotContains(t, out, "applied")
	require.Contains(t, out, "schema is at version")
	require.Contains(t, out, "duplicate window 5m0s", "a second run updates what differs")
	c, err = js.Consumer(context.Background(), "EVENTS", "webhooker")
	require.NoError(t, err)
	require.Equal(t, 7, c.CachedInfo().Config.MaxDeliver)
	require.Equal(t, 45*time.Second, c.CachedInfo().Config.AckWait, "an existing durable's AckWait updated")

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
		{[]string{"rejected", "list", "--help"}, "-all"},
		{[]string{"rejected", "replay", "-h"}, "-tenant"},
		{[]string{"console", "--help"}, "-operator-token-file"},
		{[]string{"migrate", "--help"}, "-database-url"},
		{[]string{"bench", "--help"}, "-rate"},
		{[]string{"bench", "efficiency", "--help"}, "-rates"},
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

// TestRejectedListAndReplay: rejections are listed once each (per tenant
// on request). A replay processes every consumer's letter of a message
// again: one an older version rejected but that is valid now reaches the
// timeline and is marked replayed, no longer listed by default; one that
// is still invalid stays rejected, with the errors of today's validation.
func TestRejectedListAndReplay(t *testing.T) {
	url := testenv.Database(t)
	ctx := context.Background()
	pool, err := postgres.Open(ctx, url)
	require.NoError(t, err)
	defer pool.Close()
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	refs := `"eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}`
	old := []events.FieldError{{Field: "particulars", Message: "a rule of an older version"}}
	add := func(consumer string, seq uint64, subject, body string) {
		require.NoError(t, deadletter.Add(ctx, pool, deadletter.Letter{Consumer: consumer, StreamSeq: seq, Subject: subject, Data: []byte(body),
			StreamTime: at.Add(time.Duration(seq) * time.Second), Error: "rejected", Errors: old}))
	}
	for _, c := range []string{"projector", "notifier", "webhooker", "projector-rebuild-g2"} {
		add(c, 3, "events.acme.card.closed", `{"id":"fixed","action":"closed",`+refs+`}`)
	}
	for _, c := range []string{"projector", "notifier"} {
		add(c, 4, "events.acme.card.closed", `{"id":"still-bad",`+refs+`}`)
	}
	add("projector", 5, "events.globex.card.closed", `{"id":"theirs",`+refs+`}`)

	code, out, errOut := run(t, url, "rejected", "list")
	require.Equal(t, 0, code, errOut)
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 4, "a header and one line per message:\n%s", out)
	require.Contains(t, out, "particulars: a rule of an older version")
	code, out, _ = run(t, url, "rejected", "list", "--tenant", "acme")
	require.Equal(t, 0, code)
	require.Contains(t, out, "still-bad")
	require.NotContains(t, out, "theirs")

	code, out, _ = run(t, url, "rejected", "replay", "--tenant", "acme")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "seq 3: replayed (notifier, projector, projector-rebuild-g2, webhooker)")
	require.Contains(t, out, "seq 4: still rejected: notifier: event 0: action: is required; projector: event 0: action: is required")
	require.Contains(t, out, "1 replayed, 1 still rejected")

	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM timeline_g1.events WHERE tenant = 'acme' AND id = 'fixed'`).Scan(&n))
	require.Equal(t, 1, n, "the replayed event reached the timeline")
	pending, err := deadletter.ListRejections(ctx, pool, deadletter.RejectionQuery{Tenant: "acme", Limit: 10})
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Equal(t, uint64(4), pending[0].Seq)
	require.Equal(t, []events.FieldError{{Field: "action", Message: "is required"}}, pending[0].Errors, "today's errors replace the old ones")
	withReplayed, err := deadletter.ListRejections(ctx, pool, deadletter.RejectionQuery{Tenant: "acme", IncludeReplayed: true, Limit: 10})
	require.NoError(t, err)
	require.Len(t, withReplayed, 2)
	require.NotNil(t, withReplayed[1].ReplayedAt)
	l, err := deadletter.NewStore(pool).Get(ctx, "projector", 4)
	require.NoError(t, err)
	require.Equal(t, 2, l.Failures)

	code, out, _ = run(t, url, "rejected", "list")
	require.Equal(t, 0, code)
	require.NotContains(t, out, "fixed", "replayed rejections are hidden without --all")
	code, out, _ = run(t, url, "rejected", "list", "--all")
	require.Equal(t, 0, code)
	require.Contains(t, out, "fixed")

	code, out, _ = run(t, url, "rejected", "replay", "3")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "seq 3: already replayed")
	code, _, errOut = run(t, url, "rejected", "replay", "99")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no rejection at stream sequence 99")
	code, _, errOut = run(t, url, "rejected", "replay", "x")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `"x" is not a stream sequence`)
}
