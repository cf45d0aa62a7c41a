package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/eventline/eventline/pkg/events"
)

// TestMustLookUp: only ids ingest could not have minted just now are
// looked up; a fresh UUIDv7 is covered by the stream's window.
func TestMustLookUp(t *testing.T) {
	now := time.Now()
	fresh, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	v4 := uuid.New()
	cases := map[string]bool{
		"close-c42-1":   true,
		v4.String():     true,
		fresh.String():  false,
		"":              true,
		"0190a000-0000": true,
	}
	for id, want := range cases {
		if got := mustLookUp(id, now); got != want {
			t.Errorf("mustLookUp(%q) = %v, want %v", id, got, want)
		}
	}
	if !mustLookUp(fresh.String(), now.Add(2*time.Minute)) {
		t.Error("a UUIDv7 minted two minutes before must be looked up")
	}
	if !mustLookUp(fresh.String(), now.Add(-time.Hour)) {
		t.Error("a UUIDv7 from the future (a client's clock) must be looked up")
	}
}

// lingering runs an idTable writer whose linger timer the test fires and
// whose inserts it receives, without Postgres, records first and returns
// once the writer lingers with it (it fails the test if the writer
// inserted it without lingering). cancel stops the writer.
func lingering(t *testing.T, first string) (tbl *idTable, timer chan time.Time, inserts chan []idRow, cancel func()) {
	t.Helper()
	tbl = newIDTable(nil, time.Hour, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	started := make(chan chan time.Time, 10)
	inserts = make(chan []idRow, 10)
	tbl.after = func(time.Duration) <-chan time.Time {
		c := make(chan time.Time, 1)
		started <- c
		return c
	}
	tbl.insert = func(_ context.Context, batch []idRow) error {
		inserts <- slices.Clone(batch)
		return nil
	}
	ctx, stop := context.WithCancel(context.Background())
	go tbl.run(ctx)
	cancel = func() { stop(); <-tbl.done }
	recordIDs(tbl, first)
	select {
	case timer = <-started:
	case b := <-inserts:
		cancel()
		t.Fatalf("inserted %v without lingering", b)
	}
	return tbl, timer, inserts, cancel
}

func recordIDs(tbl *idTable, ids ...string) {
	for i, id := range ids {
		tbl.record([]events.Event{{Tenant: "t", ID: id}}, []events.Result{{ID: id, Seq: uint64(i + 1)}})
	}
}

// TestIDWriterLingers: ids recorded while the writer lingers after the
// first one go into the same insert, and nothing is inserted before the
// linger ends.
func TestIDWriterLingers(t *testing.T) {
	tbl, timer, inserts, cancel := lingering(t, "a")
	defer cancel()
	recordIDs(tbl, "b", "c")
	select {
	case b := <-inserts:
		t.Fatalf("inserted %v before the linger ended", b)
	default:
	}
	timer <- time.Now()
	got := <-inserts
	if len(got) != 3 || got[0].id != "a" || got[1].id != "b" || got[2].id != "c" {
		t.Fatalf("one insert of a, b, c; got %v", got)
	}
	cancel() // the writer counts an insert after it returns: wait for the writer to end
	var m dto.Metric
	if err := tbl.written.Write(&m); err != nil || m.GetCounter().GetValue() != 3 {
		t.Fatalf("written = %v (%v), want 3", m.GetCounter().GetValue(), err)
	}
}

// TestIDWriterFullBatchDoesNotLinger: a full insert's worth is written
// without waiting for the linger to end (the timer is never fired).
func TestIDWriterFullBatchDoesNotLinger(t *testing.T) {
	tbl, _, inserts, cancel := lingering(t, "first")
	defer cancel()
	ids := make([]string, idWriteBatch)
	for i := range ids {
		ids[i] = fmt.Sprint("id-", i)
	}
	recordIDs(tbl, ids...)
	if got := <-inserts; len(got) != idWriteBatch {
		t.Fatalf("first insert has %d rows, want %d", len(got), idWriteBatch)
	}
}

// TestIDWriterStopWritesLingering: stopping while the writer lingers
// writes what it gathered.
func TestIDWriterStopWritesLingering(t *testing.T) {
	tbl, _, inserts, cancel := lingering(t, "a")
	recordIDs(tbl, "b")
	cancel()
	var n int
	for len(inserts) > 0 {
		n += len(<-inserts)
	}
	if n != 2 {
		t.Fatalf("wrote %d ids on stop, want 2", n)
	}
}
