package main_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// TestBinarySIGTERM runs the real ingest binary, appends an event, sends
// SIGTERM and expects a clean exit 0.
func TestBinarySIGTERM(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "ingest")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)

	n := testenv.StartNATS(t)
	dbURL := testenv.Database(t)
	pool, err := postgres.Open(context.Background(), dbURL)
	require.NoError(t, err)
	defer pool.Close()
	_, key, err := apikey.NewStore(pool, 0).Create(context.Background(), apikey.CreateParams{Tenant: "acme", Scopes: []string{"ingest"}})
	require.NoError(t, err)

	httpAddr, adminAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "--http-addr", httpAddr)
	cmd.Env = append(os.Environ(), "NATS_URL="+n.URL(), "DATABASE_URL="+dbURL, "ADMIN_ADDR="+adminAddr, "LOG_LEVEL=info")
	var logs strings.Builder
	cmd.Stderr = &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "ingest never became ready: %s", &logs)

	req, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/v1/events",
		strings.NewReader(`{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "exit status after SIGTERM; logs:\n%s", &logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("ingest did not exit after SIGTERM; logs:\n%s", &logs)
	}
	require.Contains(t, logs.String(), `"msg":"ingest stopped"`)
	require.Contains(t, logs.String(), `"level":"INFO"`, "JSON logs")
}

// TestBinaryBadConfig exits 2 with a message naming the variable.
func TestBinaryBadConfig(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "ingest")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "INGEST_RATE_LIMIT=lots")
	out, err = cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, 2, exit.ExitCode())
	require.Contains(t, string(out), "INGEST_RATE_LIMIT")
}
