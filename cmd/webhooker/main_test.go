package main_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestBinaryReadyThenSIGTERM runs the real webhooker binary: it becomes ready
// against real NATS and Postgres, and exits 0 on SIGTERM after draining.
func TestBinaryReadyThenSIGTERM(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	svc := testenv.StartService(t, testenv.BuildBinary(t, "./cmd/webhooker"),
		"NATS_URL="+n.URL(), "DATABASE_URL="+testenv.Database(t), "LOG_LEVEL=info")
	testenv.Poll(t, 30*time.Second, "webhooker /readyz answers 200", func() bool {
		resp, err := http.Get(svc.AdminURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err := svc.Terminate(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, svc.Output())
	}
	if !strings.Contains(svc.Output(), `"msg":"webhooker stopped"`) {
		t.Fatalf("no clean stop in the logs:\n%s", svc.Output())
	}
}
