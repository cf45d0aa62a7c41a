package main_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestBinaryReadyThenSIGTERM runs the real webhooker binary: it becomes ready
// against real NATS and Postgres, and exits 0 on SIGTERM after draining.
func TestBinaryReadyThenSIGTERM(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	testenv.Provision(t, n)
	svc := testenv.StartService(t, testenv.BuildBinary(t, "./cmd/webhooker"),
		append(n.Env(natsauth.Webhooker), "DATABASE_URL="+testenv.Database(t), "LOG_LEVEL=info")...)
	svc.WaitReady(t)
	svc.RequireCleanStop(t, "webhooker")
}

// TestBinaryRefusesToStartWithoutSecretKey: there is no default key; the
// binary exits 1 saying how to make one.
func TestBinaryRefusesToStartWithoutSecretKey(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	for _, tc := range []struct{ name, key, want string }{
		{"unset", "", "EVENTLINE_SECRET_KEY is not set"},
		{"too short", "c2hvcnQ=", "decodes to 5 bytes, want 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(testenv.BuildBinary(t, "./cmd/webhooker"))
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "EVENTLINE_SECRET_KEY=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(append(cmd.Env, n.Env(natsauth.Webhooker)...), "DATABASE_URL="+testenv.Database(t), "EVENTLINE_SECRET_KEY="+tc.key,
				"HTTP_ADDR="+testenv.FreeAddr(t), "ADMIN_ADDR="+testenv.FreeAddr(t))
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "%s", out)
			require.Equal(t, 1, exit.ExitCode(), "%s", out)
			require.Contains(t, string(out), tc.want)
			require.Contains(t, string(out), "openssl rand -base64 32")
			if tc.key != "" {
				require.NotContains(t, string(out), tc.key, "the key is never echoed")
			}
		})
	}
}
