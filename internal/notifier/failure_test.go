package notifier

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/consumerlag"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// refuse makes Postgres refuse to write a row of table (in schema notify)
// for which cond holds (an expression on NEW), with SQLSTATE code, the
// first times times (every time when times is 0): a trigger stands in for
// data Postgres refuses (a number out of numeric's range in last_event)
// or for a transient failure.
func (b *bundle) refuse(t *testing.T, table, cond, code string, times int) {
	t.Helper()
	ctx := context.Background()
	for _, sql := range []string{
		`CREATE SEQUENCE notify.refusals`,
		`CREATE FUNCTION notify.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF (` + cond + `) AND (` + strconv.Itoa(times) + ` = 0 OR nextval('notify.refusals') <= ` + strconv.Itoa(times) + `) THEN
				RAISE EXCEPTION 'refused for the test' USING ERRCODE = '` + code + `';
			END IF;
			RETURN NEW;
		END $$`,
		`CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON notify.` + table + ` FOR EACH ROW EXECUTE FUNCTION notify.refuse()`,
	} {
		_, err := b.pool.Exec(ctx, sql)
		require.NoError(t, err)
	}
}

// TestRefusedEventDeadLetteredAtOnce: an event whose notification Postgres
// refuses (a data exception, SQLSTATE class 22) is dead-lettered within
// seconds, delivered once, while the events around it are applied; the
// consumer's lag is back to nothing.
func TestRefusedEventDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	ctx := context.Background()
	b.refuse(t, "notifications", `NEW.last_event->>'id' = 'poison'`, "22003", 0)
	b.watch(t, "acme", "card", "c1", "u1")
	b.watch(t, "acme", "card", "c2", "u1")
	start := time.Now()
	res, err := b.pub.AppendBatch(ctx, []events.Event{commentEvent("before", "c1", "u9", ""), commentEvent("poison", "c2", "u9", ""),
		commentEvent("after", "c1", "u9", "")})
	require.NoError(t, err)
	testenv.Poll(t, 10*time.Second, "the refused event dead-lettered", func() bool {
		var n int
		_ = b.pool.QueryRow(ctx, `SELECT count(*) FROM eventline.dead_letters WHERE consumer = $1 AND stream_seq = $2`, DefaultConsumer, int64(res[1].Seq)).Scan(&n)
		return n == 1
	})
	b.waitProcessed(t)
	require.Less(t, time.Since(start), 10*time.Second, "dead-lettered and the rest applied within seconds")
	var reason string
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT error FROM eventline.dead_letters WHERE consumer = $1 AND stream_seq = $2`,
		DefaultConsumer, int64(res[1].Seq)).Scan(&reason))
	require.Contains(t, reason, "22003")
	require.Equal(t, map[string]int{"u1": 2}, b.unread(t, "acme", card))
	require.Equal(t, "after", b.lastEventOf(t, "acme", "u1", card))
	require.Empty(t, b.unread(t, "acme", events.Ref{Type: "card", ID: "c2"}))

	cons, err := b.js.Consumer(ctx, events.StreamName, DefaultConsumer)
	require.NoError(t, err)
	info, err := cons.Info(ctx)
	require.NoError(t, err)
	require.Zero(t, info.NumRedelivered, "never redelivered")
	str, err := b.js.Stream(ctx, events.StreamName)
	require.NoError(t, err)
	lag, err := consumerlag.Measure(ctx, cons, str, time.Now())
	require.NoError(t, err)
	require.Zero(t, lag.Pending, "nothing left behind")
	require.Zero(t, lag.Behind)
}

// TestTransientFailureRetriedInOrder: a transient failure (a
// serialization failure, SQLSTATE 40001, writing the watch an event
// starts) is retried in place until it passes, nothing is dead-lettered,
// and the event after it in the stream, which depends on that watch,
// still sees it.
func TestTransientFailureRetriedInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	ctx := context.Background()
	b.refuse(t, "watches", `NEW.user_id = 'zed'`, "40001", 3)
	f := events.Ref{Type: "card", ID: "f1"}
	// zed's comment (mentioning carol) makes both watch f1; the close
	// notifies them only if it comes after the comment.
	b.publish(t, commentEvent("flaky", "f1", "zed", `{"mentioned_user_ids": ["carol"]}`), cardEvent("close-f1", "f1", "closed", "yan", ""))
	require.Equal(t, map[string]int{"zed": 1, "carol": 2}, b.unread(t, "acme", f))
	require.Equal(t, "close-f1", b.lastEventOf(t, "acme", "carol", f))
	var attempts int64
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT last_value FROM notify.refusals`).Scan(&attempts))
	require.GreaterOrEqual(t, attempts, int64(4), "refused three times, then applied")
	var dead int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM eventline.dead_letters`).Scan(&dead))
	require.Zero(t, dead)
}

// TestStorable: a dead letter's texts are made storable, so that writing
// the letter cannot fail and block the stream behind it.
func TestStorable(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"events.acme.card.closed": "events.acme.card.closed",
		"a\x00b":                  "ab",
		"bad \xff utf-8":          "bad \uFFFD utf-8",
	} {
		require.Equal(t, want, storable(in))
	}
}

// TestPermanentErrors: decode and validation failures and SQLSTATE classes
// 22, 23 and 54 are permanent; everything else is retried.
func TestPermanentErrors(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]bool{
		"22003": true, "22P02": true, "23505": true, "54000": true,
		"40001": false, "40P01": false, "53300": false, "57P01": false, "08006": false, "42501": false, "42P01": false,
	} {
		require.Equal(t, want, isPermanent(fmt.Errorf("upsert: %w", &pgconn.PgError{Code: code})), code)
	}
	require.True(t, isPermanent(fmt.Errorf("apply: %w", markPermanent(errors.New("encode event")))))
	require.False(t, isPermanent(context.DeadlineExceeded))
	require.False(t, isPermanent(errors.New("connection reset")))
}
