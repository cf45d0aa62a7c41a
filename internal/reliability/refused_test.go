//go:build reliability

package reliability

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/consumerlag"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// consumers are the durables of the read models, one per consumer service.
var consumers = []string{"projector", "notifier", "webhooker"}

// refusedID is the id of the event every read model refuses in
// TestPoisonRefusedUnderLoad.
const refusedID = "poison-refused"

// refuseEverywhere makes Postgres refuse the event id in every consumer's
// tables with SQLSTATE 22023 (a data exception, as an out-of-range number
// or a NUL would be): the projector's events of the current generation,
// the webhooker's deliveries, the notifier's inbox and de-duplication keys.
// Ingest's validation accepts only what Postgres can store, so the test
// makes Postgres refuse it on purpose.
func refuseEverywhere(t *testing.T, s *system, id string) {
	t.Helper()
	ctx := context.Background()
	var g int
	require.NoError(t, s.pool.QueryRow(ctx, `SELECT generation FROM timeline.current`).Scan(&g))
	for i, tc := range []struct{ table, id string }{
		{fmt.Sprintf("timeline_g%d.events", g), "NEW.id"},
		{"webhook.deliveries", "NEW.event_id"},
		{"notify.notifications", "NEW.last_event->>'id'"},
		{"notify.processed", "NEW.event_id"},
	} {
		_, err := s.pool.Exec(ctx, fmt.Sprintf(`
			CREATE FUNCTION public.reliability_refuse_%[1]d() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN
				IF %[2]s = %[3]s THEN
					RAISE EXCEPTION 'reliability test: %[4]s refuses event %%', %[2]s USING ERRCODE = 'invalid_parameter_value';
				END IF;
				RETURN NEW;
			END $$;
			CREATE TRIGGER reliability_refuse BEFORE INSERT OR UPDATE ON %[4]s FOR EACH ROW EXECUTE FUNCTION public.reliability_refuse_%[1]d()`,
			i, tc.id, quoteLiteral(id), tc.table))
		require.NoError(t, err, tc.table)
	}
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// lagSample is one measurement of a durable's lag.
type lagSample struct {
	at      time.Time
	pending uint64        // num_pending + num_ack_pending
	behind  time.Duration // age of the oldest unacknowledged message
}

// lagProbe measures the lag of every consumer's durable every 200 ms, as
// the services' eventline_consumer_lag_seconds does.
type lagProbe struct {
	mu      sync.Mutex
	samples map[string][]lagSample
	stop    chan struct{}
	done    chan struct{}
}

func (s *system) probeLag(t *testing.T) *lagProbe {
	t.Helper()
	nc, err := adminConnect(s.cfg.NATSURL, s.cfg.NATSPasswords)
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	str, err := js.Stream(ctx, events.StreamName)
	require.NoError(t, err)
	cons := map[string]jetstream.Consumer{}
	for _, name := range consumers {
		c, err := js.Consumer(ctx, events.StreamName, name)
		require.NoError(t, err, name)
		cons[name] = c
	}
	p := &lagProbe{samples: map[string][]lagSample{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer nc.Close()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, name := range consumers {
				mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				l, err := consumerlag.Measure(mctx, cons[name], str, time.Now())
				cancel()
				if err == nil {
					p.mu.Lock()
					p.samples[name] = append(p.samples[name], lagSample{at: l.At, pending: l.Pending, behind: l.Behind})
					p.mu.Unlock()
				}
			}
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *lagProbe) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// between returns name's samples taken in [from, to).
func (p *lagProbe) between(name string, from, to time.Time) []lagSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []lagSample
	for _, s := range p.samples[name] {
		if !s.at.Before(from) && s.at.Before(to) {
			out = append(out, s)
		}
	}
	return out
}

func maxBehind(ss []lagSample) (time.Duration, uint64) {
	var b time.Duration
	var p uint64
	for _, s := range ss {
		b, p = max(b, s.behind), max(p, s.pending)
	}
	return b, p
}

// TestPoisonRefusedUnderLoad posts, in the middle of the usual load, one
// acknowledged event that Postgres refuses in every read model (a test
// trigger raises SQLSTATE 22023 for its id). Every consumer must
// dead-letter it on its first try within seconds of reaching it, its lag
// (the age of the oldest unacknowledged message, what
// eventline_consumer_lag_seconds exports) must be back at its baseline
// within seconds and stay there, and every other event must reach every
// read model exactly once. Before, the notifier retried such an event for
// ~45 minutes (50 deliveries with backoff up to a minute) while its lag
// climbed past 300 s.
func TestPoisonRefusedUnderLoad(t *testing.T) {
	const (
		deadLetterWithin = 10 * time.Second // "within seconds" of reaching it
		backWithin       = 15 * time.Second // lag back at baseline after the post
	)
	f := newFaultRun(t, "poison: an acknowledged event Postgres refuses in every read model (SQLSTATE 22023 from a test trigger), posted under load")
	p := testenv.StartNATSProcess(t)
	f.s = startSystem(t, systemConfig{NATSURL: p.URL(), NATSPasswords: p.Passwords})
	refuseEverywhere(t, f.s, refusedID)
	ctx := context.Background()
	lag := f.s.probeLag(t)
	f.l = startLoad(t, f.s, loadConfig{Rate: 1000, Batch: 20})
	f.l.waitAcked(5000, time.Minute)
	baselineFrom := time.Now()
	f.l.waitAcked(f.l.ackedCount()+5000, time.Minute) // ~5 s of load: the baseline

	// The poison, on a card of its own (no other event shares its inbox
	// group) and a watched board (the notifier writes for it).
	poison := newEvent(refusedID, 0)
	poison["eventable"] = map[string]string{"type": "card", "id": "poison-card"}
	var answer struct{ Events []struct{ Seq uint64 } }
	posted := time.Now()
	baseline, basePending := map[string]time.Duration{}, map[string]uint64{}
	for _, name := range consumers {
		baseline[name], basePending[name] = maxBehind(lag.between(name, baselineFrom, posted))
	}
	require.Equal(t, http.StatusAccepted, f.s.call(http.MethodPost, f.s.ingestURL()+"/v1/events", string(mustJSON(t, poison)), &answer))
	seq := answer.Events[0].Seq
	f.note("poison at seq %d posted after %d events acknowledged", seq, f.l.ackedCount())

	// Dead letters, with the time each consumer wrote its own.
	type letter struct {
		at       time.Time
		failures int
		reason   string
	}
	letters := map[string]letter{}
	deadline := time.Now().Add(time.Minute)
	for len(letters) < len(consumers) && time.Now().Before(deadline) {
		rows, err := f.s.pool.Query(ctx, `SELECT consumer, failed_at, failures, error FROM eventline.dead_letters WHERE stream_seq = $1`, int64(seq))
		require.NoError(t, err)
		for rows.Next() {
			var name string
			var l letter
			require.NoError(t, rows.Scan(&name, &l.at, &l.failures, &l.reason))
			letters[name] = l
		}
		require.NoError(t, rows.Err())
		time.Sleep(100 * time.Millisecond) // poll interval for the dead letters
	}
	for _, name := range consumers {
		l, ok := letters[name]
		if !ok {
			f.note("%s: not dead-lettered within a minute", name)
			t.Errorf("%s did not dead-letter the refused event within a minute", name)
			continue
		}
		// A consumer reaches the poison as late as it is behind.
		took := l.at.Sub(posted)
		f.note("%s dead-lettered it %.2f s after it was posted, being up to %.1f s behind before (failures %d): %s",
			name, took.Seconds(), baseline[name].Seconds(), l.failures, clip(l.reason, 140))
		if took > baseline[name]+deadLetterWithin {
			t.Errorf("%s dead-lettered the refused event after %v, want within %v of reaching it (it was up to %v behind)", name, took, deadLetterWithin, baseline[name])
		}
		if l.failures != 1 {
			t.Errorf("%s recorded the dead letter %d times, want once (dead-lettered on its first try)", name, l.failures)
		}
	}
	f.clear() // every consumer has dealt with the poison (or a minute passed)
	f.recover(2 * time.Minute)

	// Lag: back at the baseline (under twice its highest value, at least
	// 1 s above it) within backWithin of the post, and staying there for
	// the rest of a window of 10 s more.
	<-time.After(time.Until(posted.Add(backWithin + 10*time.Second))) // the measurement window, under load
	after := time.Now()
	lag.close()
	for _, name := range consumers {
		base := baseline[name]
		limit := base + max(time.Second, base) // twice the baseline's highest lag, at least 1 s above it
		samples := lag.between(name, posted, after)
		peak, peakPending := maxBehind(samples)
		back := posted // the first sample after the last one above limit
		for i, s := range samples {
			if s.behind > limit {
				back = time.Time{}
				if i+1 < len(samples) {
					back = samples[i+1].at
				}
			}
		}
		if back.IsZero() {
			f.note("%s lag: baseline up to %.1f s (%d pending); after the poison peak %.1f s, still above %.1f s %.0f s after the post",
				name, base.Seconds(), basePending[name], peak.Seconds(), limit.Seconds(), after.Sub(posted).Seconds())
			t.Errorf("%s: lag not back at its baseline %.0f s after the poison", name, after.Sub(posted).Seconds())
			continue
		}
		f.note("%s lag: baseline up to %.1f s (%d pending); after the poison peak %.1f s (%d pending), under %.1f s from %.1f s after the post on",
			name, base.Seconds(), basePending[name], peak.Seconds(), peakPending, limit.Seconds(), back.Sub(posted).Seconds())
		if back.Sub(posted) > backWithin {
			t.Errorf("%s: lag back at its baseline %v after the poison, want within %v", name, back.Sub(posted), backWithin)
		}
	}
	// Every other event reaches every read model exactly once (the poison
	// is not among the load's acknowledged events).
	f.finish(2 * time.Minute)
}
