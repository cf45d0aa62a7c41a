//go:build reliability

package reliability

import (
	"testing"
	"time"

	"github.com/eventline/eventline/internal/testenv"
)

// TestBaseline is the same load with no fault: its "time to recover" is
// the normal delay from 202 to visible in every read model, the floor for
// every other row.
func TestBaseline(t *testing.T) {
	f := newFaultRun(t, "none (baseline: the load alone)")
	p := testenv.StartNATSProcess(t)
	f.s = startSystem(t, systemConfig{NATSURL: p.URL(), NATSPasswords: p.Passwords})
	f.l = startLoad(t, f.s, loadConfig{Rate: 1500, Batch: 25})
	f.l.waitAcked(20000, time.Minute)
	f.clear()
	f.finish(time.Minute)
}
