package webhooker

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/pkg/events"
)

// TestResponseBodyPostgresCannotStore: an endpoint answers with a body
// Postgres refuses as text (a NUL byte, invalid UTF-8). The attempt is
// logged all the same, with those bytes replaced, first attempt and
// retry alike; refusing it would fail every outcome recorded with it.
func TestResponseBodyPostgresCannotStore(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.WriteHeader(http.StatusInternalServerError)
		}
		_, _ = w.Write([]byte("no\x00pe \xff"))
	})
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"*"}})
	b.publish(t, "e1")
	d := b.waitStatusAttempts(t, id, 1)[0]
	require.Equal(t, 500, d.Attempts[0].StatusCode)
	require.Equal(t, "no\uFFFDpe \uFFFD", d.Attempts[0].Response)
	b.clock.Add(6 * time.Second)
	_, err := b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	d = b.waitStatus(t, id, "succeeded", 1)[0]
	require.Len(t, d.Attempts, 2)
	require.Equal(t, "no\uFFFDpe \uFFFD", d.Attempts[1].Response)
}

// refuseRows makes Postgres refuse, with SQLSTATE 22023 (a data
// exception), every row written to table for which cond (an expression on
// NEW) holds: a stand-in for data Postgres cannot store.
func refuseRows(t *testing.T, b *bundle, table, cond string) {
	t.Helper()
	_, err := b.pool.Exec(context.Background(), `
		CREATE FUNCTION refuse_rows() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF `+cond+` THEN
				RAISE EXCEPTION 'refused by the test' USING ERRCODE = '22023';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse_rows BEFORE INSERT OR UPDATE ON `+table+` FOR EACH ROW EXECUTE FUNCTION refuse_rows()`)
	require.NoError(t, err)
}

// refuseEvent makes Postgres refuse every delivery of the event id.
func refuseEvent(t *testing.T, b *bundle, id string) {
	t.Helper()
	refuseRows(t, b, "webhook.deliveries", "NEW.event_id = '"+id+"'")
}

// TestInsertSplitsAroundARefusedEvent: one statement records the
// deliveries of several events (group commit); when Postgres refuses one
// event's, the others are recorded and only that one fails, permanently.
func TestInsertSplitsAroundARefusedEvent(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	refuseEvent(t, b, "refused")
	var items []delivery.Item
	for i := range 9 {
		id := fmt.Sprintf("e%d", i)
		if i == 6 {
			id = "refused"
		}
		ev := events.Event{ID: id, Tenant: "acme", Type: "card.closed", Seq: uint64(i + 1)}
		items = append(items, delivery.Item{Jobs: []delivery.Job{{DeliveryID: delivery.NewID(), Tenant: "acme", EndpointID: "ep", Event: ev, Attempt: 1}}})
	}
	out := insertSplitting(context.Background(), b.svc.ledger, nil, items, time.Now(), time.Now().Add(time.Minute))
	require.Len(t, out, len(items))
	for i, r := range out {
		if i == 6 {
			require.Error(t, r.err)
			require.True(t, postgres.Permanent(r.err), "%v", r.err)
			require.Empty(t, r.jobs)
			continue
		}
		require.NoError(t, r.err, "item %d", i)
		require.Len(t, r.jobs, 1, "item %d", i)
	}
	require.Equal(t, 8, b.count(t, `SELECT count(*) FROM webhook.deliveries`))
}

// TestRefusedEventDeadLetteredAtOnce: the fan-out of an event whose
// deliveries Postgres refuses dead-letters it on its first delivery, and
// the events around it are delivered once each.
func TestRefusedEventDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, options{allowPrivate: true})
	refuseEvent(t, b, "refused")
	rc := newReceiver(t, nil)
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"*"}})
	const n = 60
	in := make([]events.Event, n)
	for i := range in {
		in[i] = events.Event{ID: fmt.Sprintf("e%02d", i), Tenant: "acme", Action: "closed", Eventable: events.Ref{Type: "card", ID: "c1"},
			Creator: events.Ref{Type: "user", ID: "u1"}}
	}
	in[37].ID = "refused"
	res, err := b.pub.AppendBatch(ctx, in)
	require.NoError(t, err)

	// Before, the refusal was retried in process, recorded again for 20 s
	// (attempt first), then redelivered with backoff until MaxDeliver.
	var letters []deadletter.Letter
	testenv.Poll(t, 5*time.Second, "the refused event dead-lettered", func() bool {
		letters, err = deadletter.NewStore(b.pool).List(ctx, deadletter.ListParams{Consumer: DefaultConsumer})
		require.NoError(t, err)
		return len(letters) > 0
	})
	require.Len(t, letters, 1)
	require.Equal(t, res[37].Seq, letters[0].StreamSeq)
	require.Equal(t, 1, letters[0].Failures)
	require.Contains(t, letters[0].Error, "SQLSTATE 22023")

	ds := b.waitStatus(t, id, "succeeded", n-1)
	require.Len(t, ds, n-1, "one delivery per other event")
	b.waitFannedOut(t, res[n-1].Seq)
	for _, d := range ds {
		require.NotEqual(t, "refused", d.EventID)
	}
}

// TestAPIAnswers422WhenPostgresRefusesAValue: a webhook field Postgres
// cannot store is the client's error, answered 422 naming the problem,
// not 503 "retry" (a client that retries would retry forever): a NUL
// character, and any other data exception (a trigger stands in for one).
func TestAPIAnswers422WhenPostgresRefusesAValue(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	refuseRows(t, b, "webhook.endpoints", "NEW.description = 'refuse me'")
	create := func(description string) (int, map[string]any) {
		return b.call(t, http.MethodPost, "/v1/webhooks", map[string]any{"url": "http://127.0.0.1:9/h", "events": []string{"*"}, "description": description})
	}
	// A NUL no longer reaches Postgres: the one validation refuses it first,
	// naming the field; the trigger stands in for any refusal that remains.
	for _, tc := range []struct{ description, problem string }{
		{"refuse me", "refused by the test"},
		{"a\x00b", "cannot be stored"},
	} {
		code, out := create(tc.description)
		require.Equal(t, http.StatusUnprocessableEntity, code, "%q: %v", tc.description, out)
		require.Equal(t, "urn:eventline:problem:validation", out["type"])
		require.Contains(t, out["detail"], tc.problem)
	}
	code, out := create("a\x00b")
	require.Equal(t, http.StatusUnprocessableEntity, code)
	require.Contains(t, fmt.Sprint(out["errors"]), "description", "the error names the field")
	code, out = create("fine")
	require.Equal(t, http.StatusCreated, code, "%v", out)
	code, out = b.call(t, http.MethodPatch, "/v1/webhooks/"+out["id"].(string), map[string]any{"description": "refuse me"})
	require.Equal(t, http.StatusUnprocessableEntity, code, "%v", out)
	require.Contains(t, out["detail"], "refused by the test")
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM webhook.endpoints`), "nothing else was stored")
}
