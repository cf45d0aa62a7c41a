//go:build reliability

package reliability

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var resultsMu sync.Mutex

// resultsPath is where rows are appended: RELIABILITY_RESULTS, else a file
// in the temporary directory.
func resultsPath() string {
	if p := os.Getenv("RELIABILITY_RESULTS"); p != "" {
		return p
	}
	return filepath.Join(os.TempDir(), "eventline-reliability.jsonl")
}

// faultRun is one test's fault under load and its result row, written when
// the test ends, pass or fail.
type faultRun struct {
	t       *testing.T
	s       *system
	l       *load
	more    []*load // further loads of the test, checked like l
	row     Row
	start   time.Time
	cleared time.Time
	atClear []string // events acknowledged when the fault was cleared
	// recovered: recovery was measured (recover).
	recovered bool
}

func newFaultRun(t *testing.T, fault string) *faultRun {
	f := &faultRun{t: t, start: time.Now(), row: Row{Test: t.Name(), Fault: fault, RecoverySeconds: -1}}
	t.Cleanup(f.write)
	return f
}

func (f *faultRun) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	f.t.Log(msg)
	f.row.Notes = append(f.row.Notes, msg)
}

// clear marks the moment the fault ended.
func (f *faultRun) clear() {
	f.cleared = time.Now()
	f.atClear = f.ackedIDs()
}

// ackedIDs is every event acknowledged by the test's loads.
func (f *faultRun) ackedIDs() []string {
	ids := f.l.ackedIDs()
	for _, l := range f.more {
		ids = append(ids, l.ackedIDs()...)
	}
	return ids
}

// recover measures recovery: every event acknowledged by the time the
// fault was cleared visible in every read model. finish does it unless
// the test did, to observe more under load afterwards.
func (f *faultRun) recover(within time.Duration) {
	f.t.Helper()
	if f.cleared.IsZero() {
		f.clear()
	}
	f.recovered = true
	at, perModel := f.s.waitConverged(f.atClear, within)
	if !at.IsZero() {
		f.row.RecoverySeconds = at.Sub(f.cleared).Seconds()
		var each []string
		for _, m := range f.s.models {
			if t, ok := perModel[m.Name()]; ok {
				each = append(each, fmt.Sprintf("%s %.1fs", m.Name(), max(0, t.Sub(f.cleared).Seconds())))
			}
		}
		f.note("recovery (the %d events acknowledged before the fault cleared, visible in each model): %s", len(f.atClear), strings.Join(each, ", "))
	}
}

// finish measures recovery (unless the test did), halts the load, waits
// for the rest, and checks that no read model lost or doubled anything.
func (f *faultRun) finish(within time.Duration) {
	f.t.Helper()
	if !f.recovered {
		f.recover(within)
	}
	f.l.halt()
	for _, l := range f.more {
		l.halt()
	}
	acked := f.ackedIDs()
	f.row.Acked = len(acked)
	f.s.waitConverged(acked, within)
	tallies, err := f.s.check(f.t.Context(), acked)
	if err != nil {
		f.t.Fatalf("final check: %v", err)
	}
	f.row.Models = tallies
	f.note("load: %s", f.l.summary())
	for _, m := range tallies {
		if m.Lost != 0 || m.Duplicated != 0 {
			f.t.Errorf("%s: %d of %d acknowledged events lost, %d duplicated", m.Model, m.Lost, len(acked), m.Duplicated)
		}
	}
}

func (f *faultRun) write() {
	f.row.Passed = !f.t.Failed()
	f.row.DurationSeconds = time.Since(f.start).Seconds()
	f.row.At = time.Now().UTC().Format(time.RFC3339)
	b, err := json.Marshal(f.row)
	if err != nil {
		f.t.Errorf("encode result row: %v", err)
		return
	}
	resultsMu.Lock()
	defer resultsMu.Unlock()
	file, err := os.OpenFile(resultsPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		f.t.Errorf("results file: %v", err)
		return
	}
	defer file.Close()
	if _, err := file.Write(append(b, '\n')); err != nil {
		f.t.Errorf("results file: %v", err)
	}
	f.t.Logf("RESULT %s", b)
}
