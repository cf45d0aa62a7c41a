package main_test

import (
	"testing"

	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestBinaryReadyThenSIGTERM runs the real projector binary: it becomes ready
// against real NATS and Postgres, and exits 0 on SIGTERM after draining.
func TestBinaryReadyThenSIGTERM(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	testenv.Provision(t, n)
	svc := testenv.StartService(t, testenv.BuildBinary(t, "./cmd/projector"),
		append(n.Env(natsauth.Projector), "DATABASE_URL="+testenv.Database(t), "LOG_LEVEL=info")...)
	svc.WaitReady(t)
	svc.RequireCleanStop(t, "projector")
}
