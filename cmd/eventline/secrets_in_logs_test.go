package main_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/secretbox"
	"github.com/eventline/eventline/internal/testenv"
)

// TestNoSecretInLogs runs the real ingest, projector, webhooker and
// notifier binaries at LOG_LEVEL=debug with credentials in DATABASE_URL,
// NATS_URL (ingest and projector; the others in NATS_USER/NATS_PASSWORD)
// and SMTP_URL, through a scenario that creates API keys, creates
// and rotates webhook endpoints (one with credentials in its URL), delivers
// signed webhooks (some failing first), reads timelines, notifies users who
// get email digests over an SMTP server requiring AUTH (one digest refused
// by the server), unsubscribes with the emailed link and with forged ones,
// and makes authentication failures with wrong keys, then restarts NATS
// (disconnect and reconnect logs); then it scans every
// line the binaries wrote for every secret involved: API keys and their
// secret parts, the keys that were tried, webhook secrets (whsec_... and
// the bare base64), the sealing key, the unsubscribe secret, unsubscribe
// tokens and their signatures, and the passwords. The notifier is also
// started with SMTP_URLs it cannot parse, which it must refuse without
// printing their password, and every binary with NATS credentials the
// server refuses or a NATS_URL that does not parse.
func TestNoSecretInLogs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	dbURL := testenv.Database(t)
	pool, err := postgres.Open(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	keys := apikey.NewStore(pool, 0)
	_, acmeKey, err := keys.Create(ctx, apikey.CreateParams{Tenant: "acme", Scopes: []string{"ingest", "read", "admin"}})
	require.NoError(t, err)
	_, otherKey, err := keys.Create(ctx, apikey.CreateParams{Tenant: "other", Scopes: []string{"admin"}})
	require.NoError(t, err)
	sealKey, err := secretbox.GenerateKey()
	require.NoError(t, err)
	oldSealKey, err := secretbox.GenerateKey()
	require.NoError(t, err)

	// A password in DATABASE_URL (the test server trusts loopback, so it is
	// accepted and ignored); NATS passwords are the identities' own, which
	// the server checks.
	const dbPassword, hookPassword = "db-Pa55word-a8f3", "hook-Pa55word-19d0"
	const smtpPassword, unsubscribeSecret = "smtp-Pa55word-5e2b", "unsubscribe-secret-0c9d41f7a2"
	const userTokenSecret = "user-token-secret-7d1e55c0b3"
	const wrongNATSPassword, natsToken = "wrong-nats-Pa55word-31b7", "nats-T0ken-secret-8d2e"
	dbu, err := url.Parse(dbURL)
	require.NoError(t, err)
	dbu.User = url.UserPassword(dbu.User.Username(), dbPassword)
	testenv.Provision(t, n)
	// natsInURL is the identity's credentials in NATS_URL; natsEnv in
	// NATS_USER and NATS_PASSWORD.
	natsInURL := func(identity, password string) []string {
		nu, err := url.Parse(n.URL())
		require.NoError(t, err)
		nu.User = url.UserPassword(identity, password)
		return []string{"NATS_URL=" + nu.String()}
	}
	natsEnv := func(identity string) []string { return n.Env(identity) }

	// An endpoint stored in plaintext before secrets were sealed: the
	// webhooker seals it on start (and logs that it did).
	const legacySecret = "whsec_bGVnYWN5IHNlY3JldCBzdG9yZWQgaW4gY2xlYXI="
	_, err = pool.Exec(ctx, `INSERT INTO webhook.endpoints (tenant, id, url, events, secrets) VALUES ('acme', 'legacy', 'https://example.com/h', '{none.none}', $1)`,
		`[{"secret": "`+legacySecret+`", "expires_at": null}]`)
	require.NoError(t, err)

	env := []string{"DATABASE_URL=" + dbu.String(), "LOG_LEVEL=debug",
		"EVENTLINE_SECRET_KEY=" + sealKey, "EVENTLINE_OLD_SECRET_KEYS=" + oldSealKey, "WEBHOOK_ALLOW_PRIVATE=true"}
	with := func(more ...[]string) []string {
		out := append([]string(nil), env...)
		for _, m := range more {
			out = append(out, m...)
		}
		return out
	}
	mails := startSMTP(t, "digest", smtpPassword)
	notifierBin := testenv.BuildBinary(t, "./cmd/notifier")
	smtpURL := "smtp://digest:" + smtpPassword + "@" + mails.addr
	notifierEnv := with(natsEnv(natsauth.Notifier), []string{"SMTP_URL=" + smtpURL, "UNSUBSCRIBE_SECRET=" + unsubscribeSecret,
		"USER_TOKEN_SECRET=" + userTokenSecret,
		"PUBLIC_URL=http://notify.example.test", "DIGEST_INTERVAL=200ms", "SSE_HEARTBEAT=1s"})
	// SMTP_URLs the notifier cannot take apart: it refuses to start, and
	// the error must not carry the password.
	refusals := map[string]string{}
	for i, bad := range []string{"smtp://digest:" + smtpPassword + "@127.0.0.1:not-a-port", "smtp:digest:" + smtpPassword + "@127.0.0.1:25",
		"smtp://digest:" + smtpPassword + "%zz@127.0.0.1:25"} {
		cmd := exec.Command(notifierBin)
		cmd.Env = append(append(os.Environ(), notifierEnv...), "SMTP_URL="+bad, "HTTP_ADDR="+testenv.FreeAddr(t), "ADMIN_ADDR="+testenv.FreeAddr(t))
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		require.True(t, errors.As(err, &exit), "the notifier refuses SMTP_URL %q: %v\n%s", bad, err, out)
		require.Contains(t, string(out), "SMTP_URL")
		refusals[fmt.Sprintf("notifier refusing bad SMTP_URL %d", i)] = string(out)
	}
	// NATS credentials the server refuses, and a NATS_URL that does not
	// parse: every binary exits 1 saying why, without the secret.
	badNATS := map[string][]string{
		"a wrong password in NATS_URL":      natsInURL(natsauth.Projector, wrongNATSPassword),
		"a wrong NATS_PASSWORD":             {"NATS_URL=" + n.URL(), "NATS_USER=projector", "NATS_PASSWORD=" + wrongNATSPassword},
		"a NATS_TOKEN the server refuses":   {"NATS_URL=" + n.URL(), "NATS_TOKEN=" + natsToken},
		"a NATS_URL that does not parse":    {"NATS_URL=nats://projector:" + wrongNATSPassword + "%zz@" + strings.TrimPrefix(n.URL(), "nats://")},
		"a token in NATS_URL it refuses":    {"NATS_URL=nats://" + natsToken + "@" + strings.TrimPrefix(n.URL(), "nats://")},
		"URL credentials and NATS_PASSWORD": append(natsInURL(natsauth.Projector, wrongNATSPassword), "NATS_USER=projector", "NATS_PASSWORD="+natsToken),
	}
	for _, binary := range []string{"ingest", "projector", "webhooker", "notifier"} {
		for what, natsSettings := range badNATS {
			cmd := exec.Command(testenv.BuildBinary(t, "./cmd/"+binary))
			cmd.Env = append(append(os.Environ(), with(natsSettings)...), "HTTP_ADDR="+testenv.FreeAddr(t), "ADMIN_ADDR="+testenv.FreeAddr(t))
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "%s refuses %s: %v\n%s", binary, what, err, out)
			require.Contains(t, string(out), "NATS", "%s with %s", binary, what)
			refusals[binary+" with "+what] = string(out)
		}
	}

	ingest := testenv.StartService(t, testenv.BuildBinary(t, "./cmd/ingest"), with(natsInURL(natsauth.Ingest, n.Passwords[natsauth.Ingest]))...)
	projector := testenv.StartService(t, testenv.BuildBinary(t, "./cmd/projector"), with(natsInURL(natsauth.Projector, n.Passwords[natsauth.Projector]))...)
	webhooker := testenv.StartService(t, testenv.BuildBinary(t, "./cmd/webhooker"), with(natsEnv(natsauth.Webhooker))...)
	notifier := testenv.StartService(t, notifierBin, notifierEnv...)
	services := map[string]*testenv.Service{"ingest": ingest, "projector": projector, "webhooker": webhooker, "notifier": notifier}
	for _, s := range services {
		s.WaitReady(t)
	}

	call := func(base, method, path, key, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		require.NoError(t, err)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		return resp.StatusCode, out
	}

	// A receiver that fails the first attempt of each event at each endpoint.
	var mu sync.Mutex
	seen := map[string]int{}
	var delivered []*http.Request
	var bodies [][]byte
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		k := r.URL.Path + " " + r.Header.Get("webhook-id")
		seen[k]++
		if seen[k] == 1 {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		delivered, bodies = append(delivered, r), append(bodies, body)
	}))
	t.Cleanup(rc.Close)
	// Credentials in a webhook URL's userinfo are refused; in its query
	// they are the receiver's business and must not be logged either.
	withUserinfo, err := url.Parse(rc.URL + "/userinfo")
	require.NoError(t, err)
	withUserinfo.User = url.UserPassword("hook", hookPassword)
	code, out := call(webhooker.URL, http.MethodPost, "/v1/webhooks", acmeKey, fmt.Sprintf(`{"url": %q, "events": ["*"]}`, withUserinfo))
	require.Equal(t, http.StatusUnprocessableEntity, code, "%v", out)

	whSecrets := []string{legacySecret}
	create := func(u string) string {
		code, out := call(webhooker.URL, http.MethodPost, "/v1/webhooks", acmeKey, fmt.Sprintf(`{"url": %q, "events": ["*"], "retry_schedule": [1, 1, 1]}`, u))
		require.Equal(t, http.StatusCreated, code, "%v", out)
		whSecrets = append(whSecrets, out["secret"].(string))
		return out["id"].(string)
	}
	plain := create(rc.URL + "/plain")
	creds := create(rc.URL + "/with-creds?token=" + hookPassword)
	// Nothing listens there: attempts fail with a network error, whose
	// text (Go's url.Error) carries the whole URL.
	refused := create("http://" + testenv.FreeAddr(t) + "/refused?token=" + hookPassword)
	code, out = call(webhooker.URL, http.MethodPost, "/v1/webhooks/"+plain+"/secret/rotate", acmeKey, `{"grace_seconds": 3600}`)
	require.Equal(t, http.StatusOK, code, "%v", out)
	whSecrets = append(whSecrets, out["secret"].(string))

	// Authentication failures, each service, several ways.
	wrong := []string{
		acmeKey[:len(acmeKey)-4] + "AAAA",             // right id, wrong secret
		"el_0123456789abcdef_wrong-secret-Zq81xK2pLm", // unknown id
		"not-even-a-key-Zq81xK2pLm7",
	}
	for _, s := range services {
		for _, k := range wrong {
			for _, path := range []string{"/v1/events", "/v1/activity", "/v1/webhooks", "/v1/users/u2/notifications", "/v1/users/u2/preferences", "/v1/notification-rules"} {
				call(s.URL, http.MethodGet, path, k, "")
				call(s.URL, http.MethodPost, path, k, `{}`)
			}
		}
	}
	code, _ = call(webhooker.URL, http.MethodGet, "/v1/webhooks/"+plain, otherKey, "")
	require.Equal(t, http.StatusNotFound, code, "another tenant's webhook")
	code, _ = call(ingest.URL, http.MethodPost, "/v1/events", otherKey, `{"action":"x", "tenant": "acme"}`)
	require.Equal(t, http.StatusUnprocessableEntity, code, "an invalid event for another tenant")

	// Users who get digests: u2 at an address the SMTP server takes, u3 at
	// one it refuses. Both watch the card the events are about.
	for user, email := range map[string]string{"u2": "u2@example.com", "u3": "bounce@example.com"} {
		code, out := call(notifier.URL, http.MethodPut, "/v1/users/"+user+"/preferences", acmeKey, `{"email": "`+email+`", "digest": "every_few_hours"}`)
		require.Equal(t, http.StatusOK, code, "%v", out)
		code, out = call(notifier.URL, http.MethodPut, "/v1/watches/card/c1/users/"+user, acmeKey, "")
		require.Equal(t, http.StatusOK, code, "%v", out)
	}
	code, out = call(notifier.URL, http.MethodGet, "/v1/users/u2/preferences", otherKey, "")
	require.Equal(t, http.StatusOK, code, "%v", out)
	require.Equal(t, "", out["email"], "another tenant's u2 has no preferences")

	// Events in, timelines, notifications and signed deliveries out.
	for i := range 3 {
		code, out := call(ingest.URL, http.MethodPost, "/v1/events", acmeKey,
			fmt.Sprintf(`{"id": "e%d", "action": "closed", "eventable": {"type": "card", "id": "c1"}, "creator": {"type": "user", "id": "u1"}, "particulars": {"n": %d}}`, i, i))
		require.Equal(t, http.StatusAccepted, code, "%v", out)
	}
	testenv.Poll(t, 30*time.Second, "3 events in the timeline", func() bool {
		code, out := call(projector.URL, http.MethodGet, "/v1/timelines/card/c1", acmeKey, "")
		evs, _ := out["events"].([]any)
		return code == http.StatusOK && len(evs) == 3
	})
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			var d, e int
			_ = pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM webhook.deliveries), (SELECT count(*) FROM webhook.endpoints)").Scan(&d, &e)
			t.Logf("receiver saw %v; %d deliveries, %d endpoints\nwebhooker:\n%s", seen, d, e, webhooker.Output())
			mu.Unlock()
		}
	})
	// Replays make the deliveries certain even if the events reached the
	// fan-out before the webhooker's endpoint cache had the endpoints.
	for _, id := range []string{plain, creds, refused} {
		code, out := call(webhooker.URL, http.MethodPost, "/v1/webhooks/"+id+"/replay", acmeKey,
			fmt.Sprintf(`{"since": %q}`, time.Now().Add(-time.Hour).Format(time.RFC3339)))
		require.Equal(t, http.StatusAccepted, code, "%v", out)
	}
	// The refusing endpoint's failures also announce operational events
	// (webhook.attempt_failing, ...), which reach the "*" endpoints too:
	// the count is of the three events above.
	testenv.Poll(t, 60*time.Second, "6 deliveries after one failure each", func() bool {
		mu.Lock()
		defer mu.Unlock()
		ok := 0
		for _, path := range []string{"/plain", "/with-creds"} {
			for i := range 3 {
				if seen[fmt.Sprintf("%s e%d", path, i)] == 2 {
					ok++
				}
			}
		}
		return ok == 6
	})
	mu.Lock()
	for i, r := range delivered {
		ok := false
		for _, s := range whSecrets {
			wh, err := standardwebhooks.NewWebhook(s)
			require.NoError(t, err)
			ok = ok || wh.Verify(bodies[i], r.Header) == nil
		}
		require.True(t, ok, "delivery %d is signed with one of the endpoint secrets", i)
	}
	mu.Unlock()
	code, out = call(webhooker.URL, http.MethodGet, "/v1/webhooks/"+creds+"/deliveries", acmeKey, "")
	require.Equal(t, http.StatusOK, code, "%v", out)
	testenv.Poll(t, 30*time.Second, "failed attempts to the refusing endpoint", func() bool {
		code, out := call(webhooker.URL, http.MethodGet, "/v1/webhooks/"+refused+"/deliveries", acmeKey, "")
		ds, _ := out["deliveries"].([]any)
		attempts := 0
		for _, d := range ds {
			as, _ := d.(map[string]any)["attempts"].([]any)
			attempts += len(as)
		}
		return code == http.StatusOK && attempts >= 3
	})
	code, _ = call(webhooker.URL, http.MethodDelete, "/v1/webhooks/"+creds, acmeKey, "")
	require.Equal(t, http.StatusNoContent, code)

	// Notifications, then the pending digests flushed by a change of
	// frequency: u2's is sent, u3's refused by the server.
	for _, user := range []string{"u2", "u3"} {
		testenv.Poll(t, 30*time.Second, user+" notified of 3 events", func() bool {
			code, out := call(notifier.URL, http.MethodGet, "/v1/users/"+user+"/notifications", acmeKey, "")
			ns, _ := out["notifications"].([]any)
			return code == http.StatusOK && len(ns) == 1 && ns[0].(map[string]any)["unread_count"] == float64(3)
		})
	}
	for _, user := range []string{"u2", "u3"} {
		code, out := call(notifier.URL, http.MethodPut, "/v1/users/"+user+"/preferences", acmeKey, `{"email": "`+map[string]string{"u2": "u2@example.com", "u3": "bounce@example.com"}[user]+`", "digest": "daily"}`)
		require.Equal(t, http.StatusOK, code, "%v", out)
	}
	var digest *mail.Message
	select {
	case digest = <-mails.received:
	case <-time.After(30 * time.Second):
		t.Fatalf("no digest arrived\nnotifier:\n%s", notifier.Output())
	}
	to, err := mail.ParseAddress(digest.Header.Get("To"))
	require.NoError(t, err)
	require.Equal(t, "u2@example.com", to.Address)
	testenv.Poll(t, 30*time.Second, "u3's digest refused", func() bool {
		return strings.Contains(notifier.Output(), `"msg":"digest not sent"`)
	})
	unsubscribe := regexp.MustCompile(`<http://notify\.example\.test(/v1/unsubscribe/[^>]+)>`).FindStringSubmatch(digest.Header.Get("List-Unsubscribe"))
	require.NotNil(t, unsubscribe, "List-Unsubscribe: %s", digest.Header.Get("List-Unsubscribe"))
	token := strings.TrimPrefix(unsubscribe[1], "/v1/unsubscribe/")
	require.Equal(t, unsubscribeToken(unsubscribeSecret, "acme", "u2"), token)
	payload, sig, _ := strings.Cut(token, ".")
	forged := []string{
		base64.RawURLEncoding.EncodeToString([]byte("acme\nu3")) + "." + sig, // u2's signature on u3
		payload + "." + sig[:len(sig)-4] + "AAAA",
		unsubscribeToken("not-the-"+unsubscribeSecret, "acme", "u3"),
	}
	for _, f := range forged {
		code, _ := call(notifier.URL, http.MethodGet, "/v1/unsubscribe/"+f, "", "")
		require.Equal(t, http.StatusNotFound, code)
		code, _ = call(notifier.URL, http.MethodPost, "/v1/unsubscribe/"+f, "", "")
		require.Equal(t, http.StatusNotFound, code)
	}
	code, _ = call(notifier.URL, http.MethodGet, unsubscribe[1], "", "")
	require.Equal(t, http.StatusOK, code)
	code, _ = call(notifier.URL, http.MethodPost, unsubscribe[1], "", "List-Unsubscribe=One-Click")
	require.Equal(t, http.StatusOK, code)
	code, out = call(notifier.URL, http.MethodGet, "/v1/users/u2/preferences", acmeKey, "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "never", out["digest"], "unsubscribed with the emailed link")
	code, out = call(notifier.URL, http.MethodPost, "/v1/users/u2/notifications/read-all", acmeKey, "")
	require.Equal(t, http.StatusOK, code, "%v", out)

	// User tokens (docs/browser.md): minted, used in the URL as a browser
	// does, tampered with, and used for another user.
	code, out = call(notifier.URL, http.MethodPost, "/v1/user-tokens", acmeKey, `{"user_id": "u2"}`)
	require.Equal(t, http.StatusCreated, code, "%v", out)
	userToken := out["token"].(string)
	tampered := userToken[:len(userToken)-3] + "abc"
	code, out = call(notifier.URL, http.MethodGet, "/v1/users/u2/notifications?token="+url.QueryEscape(userToken), "", "")
	require.Equal(t, http.StatusOK, code, "%v", out)
	code, _ = call(notifier.URL, http.MethodGet, "/v1/users/u3/notifications?token="+url.QueryEscape(userToken), "", "")
	require.Equal(t, http.StatusForbidden, code)
	code, _ = call(notifier.URL, http.MethodGet, "/v1/users/u2/notifications?token="+url.QueryEscape(tampered), "", "")
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = call(notifier.URL, http.MethodGet, "/v1/users/u2/notifications", tampered, "")
	require.Equal(t, http.StatusUnauthorized, code)

	// A NATS restart once everything runs: every service logs its
	// disconnect and reconnect.
	n.Restart(t)
	for name, s := range services {
		testenv.Poll(t, 30*time.Second, name+" reconnected", func() bool { return strings.Contains(s.Output(), `"msg":"nats reconnected"`) })
		s.WaitReady(t)
	}
	for name, s := range services {
		s.RequireCleanStop(t, name)
	}

	// The needles: every secret in every form it could be printed in.
	needles := map[string]string{
		"DATABASE_URL password": dbPassword, "webhook URL password": hookPassword,
		"refused NATS password": wrongNATSPassword, "refused NATS token": natsToken,
		"sealing key": sealKey, "old sealing key": oldSealKey,
		"SMTP_URL password": smtpPassword, "unsubscribe secret": unsubscribeSecret,
		"user token secret": userTokenSecret, "user token": userToken, "tampered user token": tampered,
		"user token signature": userToken[strings.LastIndex(userToken, ".")+1:], "user token payload": userToken[:strings.LastIndex(userToken, ".")],
		"SMTP AUTH PLAIN response": base64.StdEncoding.EncodeToString([]byte("\x00digest\x00" + smtpPassword)),
	}
	for _, user := range []string{"u2", "u3"} {
		tok := unsubscribeToken(unsubscribeSecret, "acme", user)
		_, sig, _ := strings.Cut(tok, ".")
		needles["unsubscribe token of "+user] = tok
		needles["unsubscribe signature of "+user] = sig
	}
	for i, f := range forged {
		needles[fmt.Sprintf("forged unsubscribe token %d", i)] = f
	}
	for identity, password := range n.Passwords {
		needles["NATS password of "+identity] = password
	}
	for i, k := range append([]string{acmeKey, otherKey}, wrong...) {
		needles[fmt.Sprintf("API key %d", i)] = k
		if parts := strings.SplitN(k, "_", 3); len(parts) == 3 && len(parts[2]) >= 8 {
			needles[fmt.Sprintf("API key %d secret part", i)] = parts[2]
		}
	}
	for i, s := range whSecrets {
		raw := strings.TrimPrefix(s, "whsec_")
		needles[fmt.Sprintf("webhook secret %d", i)] = s
		needles[fmt.Sprintf("webhook secret %d base64", i)] = raw
		b, err := base64.StdEncoding.DecodeString(raw)
		require.NoError(t, err)
		needles[fmt.Sprintf("webhook secret %d url-base64", i)] = base64.RawURLEncoding.EncodeToString(b)
	}
	lines := 0
	outputs := map[string]string{}
	for name, s := range services {
		outputs[name] = s.Output()
	}
	for name, out := range refusals {
		outputs[name] = out
	}
	for name, out := range outputs {
		for i, line := range strings.Split(out, "\n") {
			lines++
			for what, needle := range needles {
				if strings.Contains(line, needle) {
					t.Errorf("%s log line %d contains the %s:\n%s", name, i+1, what, line)
				}
			}
		}
	}
	// The scan must have had something to scan: debug output from every
	// binary, and the failures logged.
	for name, s := range services {
		require.Contains(t, s.Output(), `"msg":"`+name+` stopped"`)
	}
	require.Contains(t, webhooker.Output(), `"msg":"sealed webhook secrets with the primary key","endpoints":1`)
	require.Contains(t, webhooker.Output(), `"level":"DEBUG"`)
	require.Contains(t, notifier.Output(), `"level":"DEBUG"`)
	require.Contains(t, notifier.Output(), "SMTP RCPT TO: 550", "the refused digest is logged with the server's answer")
	if testing.Verbose() {
		for name, s := range services {
			t.Logf("%s:\n%s", name, s.Output())
		}
	}
	t.Logf("scanned %d log lines of 4 binaries (and %d refused starts) for %d secrets", lines, len(refusals), len(needles))
}

// unsubscribeToken is an unsubscribe link's token as the notifier signs
// it (internal/notifier/mail.go), written out again here so the test
// does not trust the code it checks.
func unsubscribeToken(secret, tenant, user string) string {
	payload := tenant + "\n" + user
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("eventline-unsubscribe\n" + payload))
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// smtpServer is a real SMTP server (go-smtp) on a loopback port that
// requires AUTH PLAIN with one user and password, refuses mail to
// bounce@example.com, and passes on what it accepts.
type smtpServer struct {
	addr     string
	user     string
	password string
	received chan *mail.Message
}

func startSMTP(t *testing.T, user, password string) *smtpServer {
	t.Helper()
	s := &smtpServer{user: user, password: password, received: make(chan *mail.Message, 16)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{srv: s}, nil }))
	srv.Domain = "127.0.0.1"
	srv.AllowInsecureAuth = true // loopback, as net/smtp allows too
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

type smtpSession struct {
	srv    *smtpServer
	authed bool
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != s.srv.user || pass != s.srv.password {
			return errors.New("bad credentials")
		}
		s.authed = true
		return nil
	}), nil
}
func (s *smtpSession) Mail(string, *smtp.MailOptions) error {
	if !s.authed {
		return smtp.ErrAuthRequired
	}
	return nil
}
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if to == "bounce@example.com" {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	}
	return nil
}
func (s *smtpSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	s.srv.received <- m
	return nil
}
func (s *smtpSession) Reset()        {}
func (s *smtpSession) Logout() error { return nil }
