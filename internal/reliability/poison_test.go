//go:build reliability

package reliability

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
)

// TestPoisonMessages injects two kinds of poison under load:
//   - a raw publish of invalid JSON on events.<tenant>.card.closed, straight
//     to NATS: both consumers must dead-letter it with the reason, and a
//     replay must report it still failing without harm;
//   - an acknowledged event the database refuses (a CHECK constraint added
//     to the timeline table stands in for any row Postgres rejects): the
//     projector must dead-letter that one message and keep projecting the
//     rest; once the constraint is gone, `eventline dlq replay <seq>` must
//     put it into the timeline.
func TestPoisonMessages(t *testing.T) {
	f := newFaultRun(t, "poison: invalid JSON published raw to NATS + an event the database refuses; replayed with `eventline dlq replay`")
	p := testenv.StartNATSProcess(t)
	f.s = startSystem(t, systemConfig{NATSURL: p.URL(), NATSPasswords: p.Passwords})
	ctx := context.Background()
	f.l = startLoad(t, f.s, loadConfig{Rate: 1000, Batch: 20})
	f.l.waitAcked(3000, time.Minute)

	// 1. Invalid JSON, straight to the stream.
	f.s.publishRaw("events."+tenant+".card.closed", []byte(`{"id": "broken", "action": `))
	// 2. An event Postgres refuses.
	_, err := f.s.pool.Exec(ctx, `ALTER TABLE timeline_g1.events ADD CONSTRAINT reliability_refuse CHECK (id <> 'refused-1') NOT VALID`)
	require.NoError(t, err)
	var answer struct{ Events []struct{ Seq uint64 } }
	require.Equal(t, http.StatusAccepted, f.s.call(http.MethodPost, f.s.ingestURL()+"/v1/events", string(mustJSON(t, newEvent("refused-1", 7))), &answer))
	refusedSeq := answer.Events[0].Seq
	f.l.record("refused-1", refusedSeq)

	type letter struct {
		consumer, subject, reason string
		seq                       uint64
	}
	var letters []letter
	testenv.Poll(t, time.Minute, "four dead letters (invalid JSON for every consumer, the refused event for the projector)", func() bool {
		rows, err := f.s.pool.Query(ctx, `SELECT consumer, stream_seq, subject, error FROM eventline.dead_letters ORDER BY consumer, stream_seq`)
		if err != nil {
			return false
		}
		defer rows.Close()
		letters = letters[:0]
		for rows.Next() {
			var l letter
			var seq int64
			if rows.Scan(&l.consumer, &seq, &l.subject, &l.reason) == nil {
				l.seq = uint64(seq)
				letters = append(letters, l)
			}
		}
		return len(letters) >= 4
	})
	require.Len(t, letters, 4, "%+v", letters)
	var brokenSeq uint64
	for _, l := range letters {
		require.NotEmpty(t, l.reason)
		f.note("dead letter: consumer %s seq %d: %s", l.consumer, l.seq, clip(l.reason, 160))
		if l.seq != refusedSeq {
			brokenSeq = l.seq
		}
	}
	var consumers []string
	for _, l := range letters {
		consumers = append(consumers, l.consumer)
	}
	require.Equal(t, []string{"notifier", "projector", "projector", "webhooker"}, consumers)
	require.NotZero(t, brokenSeq)

	// The rest keeps flowing meanwhile: everything acknowledged except the
	// refused event reaches every read model.
	f.l.waitAcked(f.l.ackedCount()+3000, time.Minute)
	var others []string
	for _, id := range f.l.ackedIDs() {
		if id != "refused-1" {
			others = append(others, id)
		}
	}
	if at, _ := f.s.waitConverged(others, 2*time.Minute); at.IsZero() {
		t.Fatal("the poison stopped the flow")
	}

	// The invalid JSON stays poison: replay says so, exits non-zero, and
	// counts the failure.
	out, err := f.s.eventlineCLI(nil, "dlq", "replay", fmt.Sprint(brokenSeq))
	require.Error(t, err, "replaying invalid JSON must fail: %s", out)
	require.Contains(t, out, "still failing", out)
	var failures int
	require.NoError(t, f.s.pool.QueryRow(ctx, `SELECT failures FROM eventline.dead_letters WHERE consumer = 'projector' AND stream_seq = $1`, int64(brokenSeq)).Scan(&failures))
	require.Equal(t, 2, failures)

	// Fix the cause, replay the refused event.
	_, err = f.s.pool.Exec(ctx, `ALTER TABLE timeline_g1.events DROP CONSTRAINT reliability_refuse`)
	require.NoError(t, err)
	out, err = f.s.eventlineCLI(nil, "dlq", "replay", fmt.Sprint(refusedSeq))
	require.NoError(t, err, "%s", out)
	f.note("`eventline dlq replay %d` after the cause was removed: %s", refusedSeq, strings.TrimSpace(out))
	f.clear()
	f.finish(2 * time.Minute)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
