//go:build reliability

package reliability

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
)

// TestConsumerKillLoop appends 100,000 events in batches while the
// projector, the notifier and the webhooker are SIGKILLed in turn every few seconds and
// started again: redelivered messages must not double anything, and
// messages in flight at a kill must not be lost.
func TestConsumerKillLoop(t *testing.T) {
	f := newFaultRun(t, "projector, notifier, webhooker SIGKILLed in turn every 3 s (restarted 0.5 s later) while 100,000 events flow")
	p := testenv.StartNATSProcess(t)
	f.s = startSystem(t, systemConfig{NATSURL: p.URL(), NATSPasswords: p.Passwords, Env: []string{"PROJECTOR_ACK_WAIT=5s"}})
	const total = 100000
	f.l = startLoad(t, f.s, loadConfig{Rate: 2500, Batch: 100, Workers: 8, Total: total})

	kills := map[string]int{}
	lastKill := map[string]time.Time{}
	for turn := 0; ; turn++ {
		select {
		case <-f.l.done:
		case <-time.After(3 * time.Second):
			name := []string{"projector", "notifier", "webhooker"}[turn%3]
			f.s.kill(name)
			kills[name]++
			lastKill[name] = time.Now()
			time.Sleep(500 * time.Millisecond)
			f.s.start(name)
			continue
		}
		break
	}
	f.clear()
	f.note("SIGKILLs: projector %d, notifier %d, webhooker %d", kills["projector"], kills["notifier"], kills["webhooker"])
	// Recovery on a consumer's side depends on how long before the fault
	// cleared it was last killed: what it held comes back after its
	// durable's AckWait (docs/operations.md, AckWait and in-progress acks).
	var last []string
	for _, name := range []string{"projector", "notifier", "webhooker"} {
		if at, ok := lastKill[name]; ok {
			last = append(last, fmt.Sprintf("%s %.1fs", name, f.cleared.Sub(at).Seconds()))
		}
	}
	f.note("last SIGKILL before the fault cleared: %s", strings.Join(last, ", "))
	require.GreaterOrEqual(t, f.l.ackedCount(), total)
	f.finish(5 * time.Minute)
}

// TestSIGTERMUnderLoad sends SIGTERM to each service in turn while events
// flow: each must drain and exit 0 (logging a clean stop), and its
// replacement must pick up where it left off.
func TestSIGTERMUnderLoad(t *testing.T) {
	f := newFaultRun(t, "SIGTERM to ingest, projector, notifier, webhooker in turn under load; each restarted")
	p := testenv.StartNATSProcess(t)
	// Info level: the clean-stop line is logged at info.
	f.s = startSystem(t, systemConfig{NATSURL: p.URL(), NATSPasswords: p.Passwords, Env: []string{"LOG_LEVEL=info"}})
	f.l = startLoad(t, f.s, loadConfig{Rate: 1500, Batch: 25})

	for _, name := range []string{"projector", "notifier", "webhooker", "ingest", "projector", "notifier", "webhooker", "ingest"} {
		f.l.waitAcked(f.l.ackedCount()+3000, time.Minute)
		svc := f.s.svc(name)
		began := time.Now()
		svc.RequireCleanStop(t, name)
		f.t.Logf("%s drained and exited 0 in %v", name, time.Since(began).Round(time.Millisecond))
		f.s.start(name)
	}
	f.clear()
	f.note("8 SIGTERMs (2 per service), every one exited 0 with a clean stop logged")
	f.l.waitAcked(f.l.ackedCount()+3000, time.Minute)
	f.finish(3 * time.Minute)
}

// TestWebhookerKill SIGKILLs the webhooker once while events flow at a
// rate every consumer keeps up with, so that its recovery is not a
// backlog's: the messages its fan-out handlers held come back after the
// durable's AckWait (WEBHOOK_ACK_WAIT), and the deliveries it had claimed,
// attempts in flight, after their claim (WEBHOOK_CLAIM), the longer of
// the two (docs/operations.md, AckWait and in-progress acks).
func TestWebhookerKill(t *testing.T) {
	f := newFaultRun(t, "webhooker SIGKILLed once under light load (500 events/s), restarted 0.5 s later")
	p := testenv.StartNATSProcess(t)
	f.s = startSystem(t, systemConfig{NATSURL: p.URL(), NATSPasswords: p.Passwords})
	f.l = startLoad(t, f.s, loadConfig{Rate: 500, Batch: 25})
	f.l.waitAcked(5000, time.Minute)
	f.s.kill("webhooker")
	time.Sleep(500 * time.Millisecond)
	f.s.start("webhooker")
	f.clear()
	f.finish(3 * time.Minute)
}
