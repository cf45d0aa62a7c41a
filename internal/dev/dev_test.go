package dev_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/dev"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/webhook"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// devProcess is `eventline dev` running as a child process.
type devProcess struct {
	cmd     *exec.Cmd
	url     string
	natsURL string
	key     string
	stdout  string // what it printed up to its key
	stderr  *bytes.Buffer
	exited  chan error
}

func startDev(t *testing.T, dir, dbURL string, extra ...string) *devProcess {
	t.Helper()
	bin := testenv.BuildBinary(t, "./cmd/eventline")
	addr := testenv.FreeAddr(t)
	cmd := exec.Command(bin, append([]string{"dev", "--dir", dir, "--http-addr", addr, "--nats-addr", "127.0.0.1:0"}, extra...)...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "LOG_LEVEL=info")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	p := &devProcess{cmd: cmd, url: "http://" + addr, stderr: &bytes.Buffer{}, exited: make(chan error, 1)}
	cmd.Stderr = &lockedWriter{w: p.stderr}
	require.NoError(t, cmd.Start())
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	keyNext := false
	timeout := time.After(60 * time.Second)
	for p.key == "" {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "eventline dev exited before printing its key:\n%s", p.stderr)
			p.stdout += line + "\n"
			if keyNext {
				p.key = strings.TrimSpace(line)
			}
			if f := strings.Fields(line); len(f) > 1 && f[0] == "nats" {
				p.natsURL = f[1]
			}
			keyNext = strings.HasPrefix(line, "key for tenant")
		case <-timeout:
			t.Fatalf("eventline dev printed no key within 60s:\n%s", p.stderr)
		}
	}
	go func() {
		for range lines { //nolint:revive // drain stdout
		}
	}()
	require.True(t, strings.HasPrefix(p.key, "el_"), "key line %q", p.key)
	return p
}

// stop sends SIGTERM and requires a clean exit.
func (p *devProcess) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.exited:
		require.NoError(t, err, "eventline dev did not exit 0 on SIGTERM:\n%s", p.stderr)
		require.NotContains(t, p.stderr.String(), `"level":"ERROR"`, "a clean stop logs no error")
	case <-time.After(45 * time.Second):
		t.Fatalf("eventline dev did not stop within 45s of SIGTERM:\n%s", p.stderr)
	}
}

// webhookEndpoints is the size of the webhooker's endpoint registry, from
// its metrics.
func (p *devProcess) webhookEndpoints(t *testing.T) int {
	t.Helper()
	code, body := p.do(t, http.MethodGet, "/metrics/webhooker", "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "eventline_webhook_endpoints "); ok {
			n, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err, "%q", line)
			return int(n)
		}
	}
	t.Fatalf("no eventline_webhook_endpoints in the webhooker's metrics:\n%s", body)
	return 0
}

func (p *devProcess) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, p.url+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+p.key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestDevEndToEnd starts `eventline dev` as a subprocess, posts events
// and sees them in a timeline, in a notification and in a signed webhook
// delivery to a local receiver; then restarts it on the same state directory and finds the
// same key and the same data.
func TestDevEndToEnd(t *testing.T) {
	t.Parallel()
	dir, dbURL := t.TempDir(), testenv.Database(t)
	p := startDev(t, dir, dbURL)

	code, body := p.do(t, http.MethodGet, "/readyz", "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	for svc, metric := range map[string]string{"ingest": "eventline_ingest_request_duration_seconds histogram",
		"projector": "eventline_projector_batch_duration_seconds histogram", "webhooker": `eventline_consumer_lag_seconds{consumer="webhooker"}`,
		"notifier": `eventline_consumer_lag_seconds{consumer="notifier"}`} {
		code, body = p.do(t, http.MethodGet, "/metrics/"+svc, "")
		require.Equal(t, http.StatusOK, code, "/metrics/%s: %s", svc, body)
		require.Contains(t, string(body), metric, "/metrics/%s serves the service's own metrics", svc)
	}
	code, body = p.do(t, http.MethodGet, "/v1/activity/", "")
	require.Equal(t, http.StatusNotFound, code, "%s", body)
	require.Contains(t, string(body), `"status":404`, "an unknown path is answered with problem+json")
	code, body = p.do(t, http.MethodGet, "/v1/events", "")
	require.Equal(t, http.StatusMethodNotAllowed, code, "%s", body)
	require.Contains(t, string(body), `"status":405`, "a wrong method is answered with problem+json")
	code, body = p.do(t, http.MethodPost, "/dev/webhook-sink", "not json")
	require.Equal(t, http.StatusBadRequest, code, "%s", body)
	require.Contains(t, string(body), `"status":400`, "the sink refuses a body that is not JSON with problem+json")
	code, body = p.do(t, http.MethodGet, "/v1/rejected-events", "")
	require.Equal(t, http.StatusOK, code, "routed to the projector: %s", body)
	require.JSONEq(t, `{"rejected_events":[],"next_cursor":null}`, string(body))

	// The operator console answers its token (kept in the state directory)
	// with every service ready and every durable's lag; the webhook portal
	// is served and its tokens minted.
	require.Contains(t, p.stdout, p.url+"/console")
	consoleToken, err := os.ReadFile(filepath.Join(dir, "console.token"))
	require.NoError(t, err)
	testenv.Poll(t, 20*time.Second, "the console's overview with every service ready", func() bool {
		req, err := http.NewRequest(http.MethodGet, p.url+"/console/api/overview", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(consoleToken)))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var o struct {
			Services []struct {
				Name  string
				Ready bool
			}
			Consumers []struct{ Name string }
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&o))
		ready := 0
		for _, s := range o.Services {
			if s.Ready {
				ready++
			}
		}
		return ready == 4 && len(o.Consumers) == 3
	})
	code, body = p.do(t, http.MethodGet, "/console/api/overview", "")
	require.Equal(t, http.StatusUnauthorized, code, "an API key does not open the console: %s", body)
	code, body = p.do(t, http.MethodPost, "/v1/portal-tokens", "")
	require.Equal(t, http.StatusCreated, code, "%s", body)
	require.Contains(t, string(body), `"url":"`+p.url+`/portal#token=elp_`)
	code, body = p.do(t, http.MethodGet, "/portal", "")
	require.Equal(t, http.StatusOK, code, "%s", body)

	// The embedded NATS server has eventline's identities, with passwords
	// kept in the state directory: no credentials, no connection.
	_, err = nats.Connect(p.natsURL)
	require.ErrorIs(t, err, nats.ErrAuthorization, "an anonymous client at %s", p.natsURL)
	adminFile := filepath.Join(dir, "nats-identities", "admin")
	fi, err := os.Stat(adminFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	password, err := os.ReadFile(adminFile)
	require.NoError(t, err)
	admin, err := nats.Connect(p.natsURL, nats.UserInfo("admin", strings.TrimSpace(string(password))), nats.CustomInboxPrefix("_INBOX_admin"))
	require.NoError(t, err)
	js, err := jetstream.New(admin)
	require.NoError(t, err)
	for _, durable := range []string{"projector", "notifier", "webhooker"} {
		_, err := js.Consumer(context.Background(), "EVENTS", durable)
		require.NoError(t, err, "eventline dev provisioned durable %s as the admin", durable)
	}
	admin.Close()

	type delivery struct {
		headers http.Header
		body    []byte
	}
	got := make(chan delivery, 16)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- delivery{r.Header.Clone(), b}
	}))
	defer rc.Close()
	known := p.webhookEndpoints(t)
	code, body = p.do(t, http.MethodPost, "/v1/webhooks", fmt.Sprintf(`{"url":%q,"events":["card.*"]}`, rc.URL))
	require.Equal(t, http.StatusCreated, code, "%s", body)
	var ep struct{ Secret string }
	require.NoError(t, json.Unmarshal(body, &ep))
	testenv.Poll(t, 10*time.Second, "the webhooker's registry holds the new endpoint", func() bool { return p.webhookEndpoints(t) > known })

	code, body = p.do(t, http.MethodPost, "/v1/events", `{"id":"close-c42","action":"closed",
		"eventable":{"type":"card","id":"c42"},"creator":{"type":"user","id":"u7"},
		"parents":[{"type":"board","id":"b1"}],"particulars":{"column":"Done"}}`)
	require.Equal(t, http.StatusAccepted, code, "%s", body)

	code, body = p.do(t, http.MethodPost, "/v1/events", `{"id":"publish-c43","action":"published",
		"eventable":{"type":"card","id":"c43"},"creator":{"type":"user","id":"u7"},
		"parents":[{"type":"board","id":"b1"}],"particulars":{"assignee_ids":["u8"]}}`)
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	testenv.Poll(t, 20*time.Second, "u8's notification for card c43", func() bool {
		code, body := p.do(t, http.MethodGet, "/v1/users/u8/notifications", "")
		return code == http.StatusOK && bytes.Contains(body, []byte(`"group":{"type":"card","id":"c43"}`)) && bytes.Contains(body, []byte(`"unread_total":1`))
	})

	testenv.Poll(t, 20*time.Second, "the event in board b1's timeline", func() bool {
		code, body := p.do(t, http.MethodGet, "/v1/timelines/board/b1", "")
		return code == http.StatusOK && bytes.Contains(body, []byte(`"close-c42"`))
	})
	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case d := <-got:
			require.NoError(t, webhook.Verify(ep.Secret, d.headers, d.body), "the delivery's signature verifies")
			seen[d.headers.Get("webhook-id")] = true
		case <-time.After(20 * time.Second):
			t.Fatalf("webhook deliveries within 20s: %v\n%s", seen, p.stderr)
		}
	}
	require.Equal(t, map[string]bool{"close-c42": true, "publish-c43": true}, seen)
	p.stop(t)

	// Same state directory: the saved key still works and the event is
	// still there.
	again := startDev(t, dir, dbURL)
	require.Equal(t, p.key, again.key, "the dev key is kept in the state directory")
	kept, err := os.ReadFile(adminFile)
	require.NoError(t, err)
	require.Equal(t, password, kept, "the NATS passwords are kept in the state directory")
	code, body = again.do(t, http.MethodGet, "/v1/events/close-c42", "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	again.stop(t)
}

// TestDevDemoFillsEveryReadModel runs `eventline dev --demo` and checks
// that the generated activity reaches the timelines, the team's inboxes
// and the dev webhook sink.
func TestDevDemoFillsEveryReadModel(t *testing.T) {
	t.Parallel()
	p := startDev(t, t.TempDir(), testenv.Database(t), "--demo", "--demo-rate", "20")
	require.Contains(t, p.stdout, "boards roadmap, bugs, launch; users ana, ben, chloe, dev, eli, fatima, gus, hana", "the demo's names are printed")
	require.Contains(t, p.stdout, "/v1/timelines/board/roadmap", "the try: lines use a demo board")
	testenv.Poll(t, 30*time.Second, "demo activity and webhook deliveries", func() bool {
		code, body := p.do(t, http.MethodGet, "/v1/activity?limit=200", "")
		if code != http.StatusOK {
			return false
		}
		var feed struct{ Events []struct{ Type string } }
		if json.Unmarshal(body, &feed) != nil || len(feed.Events) < 200 {
			return false
		}
		types := map[string]bool{}
		for _, e := range feed.Events {
			types[e.Type] = true
		}
		for _, want := range []string{"card.published", "card.assigned", "card.moved", "comment.created"} {
			if !types[want] {
				return false
			}
		}
		code, body = p.do(t, http.MethodGet, "/dev/webhook-sink", "")
		var sink struct{ Total int }
		if code != http.StatusOK || json.Unmarshal(body, &sink) != nil || sink.Total < 200 {
			return false
		}
		notified := 0
		for _, u := range dev.DemoUsers {
			code, body = p.do(t, http.MethodGet, "/v1/users/"+u+"/notifications", "")
			var inbox struct {
				UnreadTotal int `json:"unread_total"`
			}
			if code == http.StatusOK && json.Unmarshal(body, &inbox) == nil && inbox.UnreadTotal > 0 {
				notified++
			}
		}
		return notified >= len(dev.DemoUsers)/2
	})
	code, body := p.do(t, http.MethodGet, "/v1/users/ana/preferences", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(body), "ana@example.com")
	p.stop(t)
}

// TestDevSaysHowToGetPostgres: an unusable DATABASE_URL ends the run with
// a message that says how to get a database.
func TestDevSaysHowToGetPostgres(t *testing.T) {
	t.Parallel()
	err := dev.Run(context.Background(), dev.Options{Dir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0",
		DatabaseURL: "postgres://postgres@" + testenv.FreeAddr(t) + "/eventline?sslmode=disable&connect_timeout=2", Stdout: io.Discard})
	require.Error(t, err)
	require.Contains(t, err.Error(), "DATABASE_URL")
	require.Contains(t, err.Error(), "pg_ctlcluster")
	require.Contains(t, err.Error(), "initdb")
}
