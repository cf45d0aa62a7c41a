package main_test

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestBinaryReadyThenSIGTERM runs the real notifier binary with digests
// enabled: it becomes ready against real NATS and Postgres (its inbox
// listener included), and exits 0 on SIGTERM after draining.
func TestBinaryReadyThenSIGTERM(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	testenv.Provision(t, n)
	svc := testenv.StartService(t, testenv.BuildBinary(t, "./cmd/notifier"),
		append(n.Env(natsauth.Notifier), "DATABASE_URL="+testenv.Database(t), "LOG_LEVEL=info",
			"SMTP_URL=smtp://"+testenv.FreeAddr(t), "UNSUBSCRIBE_SECRET=0123456789abcdef0123", "PUBLIC_URL=http://127.0.0.1")...)
	svc.WaitReady(t)
	resp, err := http.Get(svc.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"eventline_notifier_notifications_written_total", "eventline_notifier_sse_subscribers"} {
		if !strings.Contains(string(metrics), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	svc.RequireCleanStop(t, "notifier")
}

// TestBinaryRefusesDigestsWithoutSecret: SMTP without an unsubscribe
// secret is a configuration error, reported before anything starts.
func TestBinaryRefusesDigestsWithoutSecret(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	cmd := exec.Command(testenv.BuildBinary(t, "./cmd/notifier"))
	cmd.Env = append(append(os.Environ(), n.Env(natsauth.Notifier)...), "DATABASE_URL="+testenv.Database(t), "SMTP_URL=smtp://127.0.0.1:1",
		"UNSUBSCRIBE_SECRET=", "HTTP_ADDR="+testenv.FreeAddr(t), "ADMIN_ADDR="+testenv.FreeAddr(t))
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "UNSUBSCRIBE_SECRET") {
		t.Fatalf("exit %v, output:\n%s", err, out)
	}
}
