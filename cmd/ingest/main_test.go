package main_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestBinarySIGTERM runs the real ingest binary, appends an event, sends
// SIGTERM and expects a clean exit 0.
func TestBinarySIGTERM(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	dbURL := testenv.Database(t)
	pool, err := postgres.Open(context.Background(), dbURL)
	require.NoError(t, err)
	defer pool.Close()
	_, key, err := apikey.NewStore(pool, 0).Create(context.Background(), apikey.CreateParams{Tenant: "acme", Scopes: []string{"ingest"}})
	require.NoError(t, err)

	testenv.Provision(t, n)
	svc := testenv.StartService(t, testenv.BuildBinary(t, "./cmd/ingest"), append(n.Env(natsauth.Ingest), "DATABASE_URL="+dbURL, "LOG_LEVEL=info")...)
	svc.WaitReady(t)

	req, _ := http.NewRequest(http.MethodPost, svc.URL+"/v1/events",
		strings.NewReader(`{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	require.Contains(t, svc.Output(), `"level":"INFO"`, "JSON logs")
	svc.RequireCleanStop(t, "ingest")
}

// TestBinaryBadConfig exits 2 with a message naming the variable.
func TestBinaryBadConfig(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(testenv.BuildBinary(t, "./cmd/ingest"))
	cmd.Env = append(os.Environ(), "INGEST_RATE_LIMIT=lots")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, 2, exit.ExitCode())
	require.Contains(t, string(out), "INGEST_RATE_LIMIT")
}
