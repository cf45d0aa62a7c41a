//go:build reliability

package reliability

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
)

// TestNATSKill SIGKILLs the nats-server process twice: once while the load
// appends and the consumers keep up, once right after the load stopped
// while the consumers are still working through what it appended. The
// services are not restarted.
func TestNATSKill(t *testing.T) {
	f := newFaultRun(t, "nats-server SIGKILL ×2 (during ingest, during consumption), 3 s down each")
	p := testenv.StartNATSProcess(t)
	f.s = startSystem(t, systemConfig{NATSURL: p.URL(), NATSPasswords: p.Passwords})
	f.l = startLoad(t, f.s, loadConfig{Rate: 1500, Batch: 25})

	f.l.waitAcked(10000, time.Minute)
	p.Kill(t)
	time.Sleep(3 * time.Second) // the outage
	p.Start(t)
	f.l.waitAcked(f.l.ackedCount()+10000, 2*time.Minute)

	// Second kill: during consumption. Halt the steady load, append a
	// burst of 20,000 events faster than the consumers take them, and kill
	// the server while they work through the backlog.
	f.l.halt()
	burst := startLoad(t, f.s, loadConfig{Prefix: "burst", Rate: 10000, Batch: 500, Workers: 4, Total: 20000})
	f.more = append(f.more, burst)
	select {
	case <-burst.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the burst was not acknowledged within 2 minutes")
	}
	backlog, err := f.s.check(t.Context(), burst.ackedIDs())
	require.NoError(t, err)
	f.note("second kill with the consumers behind by: timeline %d, webhook deliveries %d, receiver %d events", backlog[0].Lost, backlog[1].Lost, backlog[2].Lost)
	p.Kill(t)
	time.Sleep(3 * time.Second)
	p.Start(t)
	f.clear()
	f.finish(3 * time.Minute)
}

// TestNATSStop freezes nats-server with SIGSTOP for 15 s under load, then
// SIGCONT: TCP connections stay open but nothing answers.
func TestNATSStop(t *testing.T) {
	f := newFaultRun(t, "nats-server SIGSTOP 15 s, then SIGCONT")
	p := testenv.StartNATSProcess(t)
	f.s = startSystem(t, systemConfig{NATSURL: p.URL(), NATSPasswords: p.Passwords})
	f.l = startLoad(t, f.s, loadConfig{Rate: 1500, Batch: 25})

	f.l.waitAcked(10000, time.Minute)
	failed := f.l.failures()
	require.NoError(t, syscall.Kill(p.PID(), syscall.SIGSTOP))
	time.Sleep(15 * time.Second)
	require.NoError(t, syscall.Kill(p.PID(), syscall.SIGCONT))
	f.clear()
	f.note("%d requests failed (503 or no answer) while the server was stopped, and were re-sent", f.l.failures()-failed)
	f.l.waitAcked(f.l.ackedCount()+10000, 2*time.Minute)
	f.finish(3 * time.Minute)
}

// TestNATSDown3Minutes takes nats-server away for three minutes under load.
// The services keep running: /readyz must say not-ready while NATS is
// gone and ready again after it is back, without a restart.
func TestNATSDown3Minutes(t *testing.T) {
	outage := 3 * time.Minute
	if d := os.Getenv("RELIABILITY_OUTAGE"); d != "" { // shorter while iterating
		var err error
		outage, err = time.ParseDuration(d)
		require.NoError(t, err)
	}
	f := newFaultRun(t, fmt.Sprintf("nats-server down %v (SIGTERM) under load; services not restarted; /readyz polled", outage))
	p := testenv.StartNATSProcess(t)
	f.s = startSystem(t, systemConfig{NATSURL: p.URL(), NATSPasswords: p.Passwords})
	f.l = startLoad(t, f.s, loadConfig{Rate: 1000, Batch: 20})
	probe := f.s.probeReadiness()
	defer probe.close()

	f.l.waitAcked(5000, time.Minute)
	probe.reset()
	p.Stop(t)
	down := time.Now()
	time.Sleep(outage)
	ready, notReady := probe.reset()
	p.Start(t)
	f.clear()
	f.note("down %v; /readyz answers during the outage (not-ready/ready): ingest %d/%d, projector %d/%d, notifier %d/%d, webhooker %d/%d",
		time.Since(down).Round(time.Second), notReady["ingest"], ready["ingest"], notReady["projector"], ready["projector"],
		notReady["notifier"], ready["notifier"], notReady["webhooker"], ready["webhooker"])
	for _, name := range services {
		require.NotZero(t, notReady[name], "%s never reported not-ready while NATS was down", name)
		// Allow the first poll (taken as the server went away) to be ready.
		require.LessOrEqual(t, ready[name], 2, "%s reported ready while NATS was down", name)
	}
	// Back to ready, without a restart.
	// The probe asks the services one after the other every 250 ms; count
	// each service ready once it answered 200 since NATS came back (a
	// window reset on every poll could split one round of the probe and
	// never see all four).
	var readyAfter time.Duration
	seen := map[string]bool{}
	testenv.Poll(t, 2*time.Minute, "every service ready again", func() bool {
		r, _ := probe.reset()
		for name, n := range r {
			seen[name] = seen[name] || n > 0
		}
		for _, name := range services {
			if !seen[name] {
				return false
			}
		}
		readyAfter = time.Since(f.cleared)
		return true
	})
	f.note("every service ready %.1fs after NATS was back", readyAfter.Seconds())
	f.l.waitAcked(f.l.ackedCount()+5000, 2*time.Minute)
	f.finish(3 * time.Minute)
}
