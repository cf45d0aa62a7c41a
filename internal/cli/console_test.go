package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/cli"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// `eventline console` refuses to start without an operator token, then
// serves the console on its own address as the NATS admin and the
// database owner until its context ends. Not parallel: t.Setenv.
func TestConsoleCommand(t *testing.T) {
	url := testenv.Database(t)
	n := testenv.StartNATS(t)
	setNATSEnv(t, n, natsauth.Admin)
	code, _, errOut := run(t, url, "migrate", "--skip-database")
	require.Equal(t, 0, code, errOut)

	t.Setenv("CONSOLE_TOKEN", "")
	code, _, errOut = run(t, url, "console")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "no operator token: set CONSOLE_TOKEN or --operator-token-file")
	t.Setenv("CONSOLE_TOKEN", "too-short")
	code, _, errOut = run(t, url, "console")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "at least 24")

	const token = "an-operator-token-of-the-test-run"
	t.Setenv("CONSOLE_TOKEN", token)
	addr := testenv.FreeAddr(t)
	ctx, stop := context.WithCancel(context.Background())
	var out, errBuf syncBuffer
	done := make(chan int, 1)
	go func() { done <- cli.Run(ctx, []string{"console", "--listen", addr}, &out, &errBuf) }()
	testenv.Poll(t, 20*time.Second, "the console to listen", func() bool { return bytes.Contains([]byte(out.String()), []byte("/console")) })
	require.Contains(t, out.String(), "eventline console on http://"+addr+"/console")

	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/console/api/overview", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var o struct {
		Stream    struct{ Name string }
		Consumers []struct{ Name string }
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&o))
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "EVENTS", o.Stream.Name)
	require.Len(t, o.Consumers, 3)
	testenv.RequireProblem(t, http.MethodGet, "http://"+addr+"/no-such-thing", http.StatusNotFound, "")
	testenv.RequireProblem(t, http.MethodPost, "http://"+addr+"/livez", http.StatusMethodNotAllowed, "GET")

	stop()
	select {
	case code := <-done:
		require.Equal(t, 0, code, errBuf.String())
	case <-time.After(15 * time.Second):
		t.Fatal("eventline console did not stop within 15s of its context ending")
	}
}
