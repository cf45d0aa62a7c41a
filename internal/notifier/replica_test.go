package notifier

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// holds reports whether batch s carries the event id.
func holds(s *slot, id string) bool {
	for _, it := range s.items {
		if it.event != nil && it.event.ID == id {
			return true
		}
	}
	return false
}

// waitApplied waits until the checkpoint is at the end of the stream.
func (b *bundle) waitApplied(t *testing.T) {
	t.Helper()
	end := b.lastSeq(t)
	testenv.Poll(t, 15*time.Second, "checkpoint at the end of the stream", func() bool {
		var last int64
		err := b.pool.QueryRow(context.Background(), `SELECT last_seq FROM notify.progress WHERE consumer = $1`, DefaultConsumer).Scan(&last)
		return err == nil && uint64(last) >= end
	})
}

// waitClosed waits for ch to be closed.
func waitClosed(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("no %s within 20s", what)
	}
}

// failoverModel is what the failover tests' events must give.
func failoverModel(es ...events.Event) *model {
	m := newModel()
	for _, e := range es {
		m.apply(e)
	}
	return m
}

// TestStandbyTakesOverFromACrashedReplica: the replica applying the
// stream dies holding a batch it did not commit; once the durable's pin
// expires the standby gets the stream, reads the messages the dead
// replica held from the stream instead of waiting for their redelivery,
// and applies them in order before the event that depends on them.
func TestStandbyTakesOverFromACrashedReplica(t *testing.T) {
	t.Parallel()
	cfg := Config{PinnedTTL: 2 * time.Second, GapWait: 200 * time.Millisecond}
	stalled, crash := make(chan struct{}), make(chan struct{})
	crashNow := sync.OnceFunc(func() { close(crash) })
	t.Cleanup(crashNow) // a test that stops early does not leave the batch hanging
	var once sync.Once
	var a *Service
	b := setup(t, options{cfg: cfg, prepare: func(s *Service) {
		a = s
		s.hook = func(stage string, sl *slot) error {
			select {
			case <-crash:
				return errors.New("this replica is dead")
			default:
			}
			if stage == "before_commit" && holds(sl, "stall") {
				once.Do(func() { close(stalled) })
				<-crash
				return errors.New("this replica is dead")
			}
			return nil
		}
	}})
	ctx := context.Background()
	warm := cardEvent("warm", "w1", "published", "zed", "")
	b.publish(t, warm) // the first replica has the pin
	b.startService(t, cfg, nil)
	stall, closed := cardEvent("stall", "s1", "published", "zed", ""), cardEvent("close-s1", "s1", "closed", "yan", "")
	_, err := b.pub.AppendBatch(ctx, []events.Event{stall, closed})
	require.NoError(t, err)
	waitClosed(t, stalled, "the first replica taking the batch")
	a.nc.Close() // it asks for no more messages and acks nothing
	crashNow()   // and its transactions roll back
	late := commentEvent("late", "s1", "kim", `{"mentioned_user_ids": ["carol"]}`)
	_, err = b.pub.Append(ctx, late)
	require.NoError(t, err)
	b.waitApplied(t)
	checkAgainstModel(t, b, "acme", 0, failoverModel(warm, stall, closed, late))
	require.Equal(t, map[string]int{"zed": 2, "carol": 1}, b.unread(t, "acme", events.Ref{Type: "card", ID: "s1"}))
}

// TestReplicaThatLostItsTurnCannotCommitOverAnother: a replica stalls
// inside a batch's transaction and loses the pin; the standby takes the
// same events (read from the stream) and waits on the stalled
// transaction's locks; the stalled one commits first, and the standby's
// transaction, which would commit the same part of the stream again, is
// refused by the checkpoint and rolled back; it follows the checkpoint and
// applies what comes after. Every event counts once. (On a loaded machine
// the pin may move before the stall, the standby commit first and the
// stalled replica be the one refused: either way one is.)
func TestReplicaThatLostItsTurnCannotCommitOverAnother(t *testing.T) {
	t.Parallel()
	cfg := Config{PinnedTTL: 2 * time.Second, GapWait: 200 * time.Millisecond}
	stalled, release := make(chan struct{}), make(chan struct{})
	releaseNow := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseNow) // a test that stops early does not leave the batch hanging
	var once sync.Once
	var a *Service
	fenced := make(chan struct{})
	var fencedOnce sync.Once
	noteFenced := func(stage string, sl *slot) {
		if stage == "failed" && errors.Is(sl.err, errFenced) {
			fencedOnce.Do(func() { close(fenced) })
		}
	}
	b := setup(t, options{cfg: cfg, prepare: func(s *Service) {
		a = s
		s.hook = func(stage string, sl *slot) error {
			noteFenced(stage, sl)
			if stage == "before_commit" && holds(sl, "stall") {
				once.Do(func() { close(stalled) })
				<-release
			}
			return nil
		}
	}})
	ctx := context.Background()
	warm := cardEvent("warm", "w1", "published", "zed", "")
	b.publish(t, warm)
	b.startService(t, cfg, func(s *Service) {
		s.hook = func(stage string, sl *slot) error {
			noteFenced(stage, sl)
			return nil
		}
	})
	stall, closed := cardEvent("stall", "s1", "published", "zed", ""), cardEvent("close-s1", "s1", "closed", "yan", "")
	_, err := b.pub.AppendBatch(ctx, []events.Event{stall, closed})
	require.NoError(t, err)
	waitClosed(t, stalled, "the first replica taking the batch")
	a.nc.Close() // it loses the pin, its transaction stays open
	late := commentEvent("late", "s1", "kim", `{"mentioned_user_ids": ["carol"]}`)
	_, err = b.pub.Append(ctx, late)
	require.NoError(t, err)
	testenv.Poll(t, 20*time.Second, "the standby waiting on the stalled transaction's locks (or past it)", func() bool {
		var waiting int
		var last int64
		err := b.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'),
			(SELECT last_seq FROM notify.progress WHERE consumer = $1)`, DefaultConsumer).Scan(&waiting, &last)
		return err == nil && (waiting > 0 || last >= 3)
	})
	releaseNow()
	waitClosed(t, fenced, "a transaction refused by the checkpoint")
	b.waitApplied(t)
	checkAgainstModel(t, b, "acme", 0, failoverModel(warm, stall, closed, late))
	require.Equal(t, map[string]int{"zed": 2, "carol": 1}, b.unread(t, "acme", events.Ref{Type: "card", ID: "s1"}))
}
