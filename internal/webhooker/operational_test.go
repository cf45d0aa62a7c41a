package webhooker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/pkg/events"
)

// opOptions runs the service with a stream that de-duplicates event ids
// for 100 ms only: an operational event announced twice then shows as two
// messages, so these tests see a repeat the stream would otherwise hide
// (docs/webhooks.md "Operational events").
func opOptions() options {
	return options{allowPrivate: true, stream: stream.Config{Duplicates: 100 * time.Millisecond}}
}

// opCounts counts tenant acme's webhook.* events in the stream, by type.
func (b *bundle) opCounts(t *testing.T) map[string]int {
	t.Helper()
	ctx := context.Background()
	str, err := b.js.Stream(ctx, events.StreamName)
	require.NoError(t, err)
	info, err := str.Info(ctx, jetstream.WithSubjectFilter("events.acme.webhook.>"))
	require.NoError(t, err)
	out := map[string]int{}
	for subject, n := range info.State.Subjects {
		out["webhook."+strings.TrimPrefix(subject, "events.acme.webhook.")] = int(n)
	}
	return out
}

// waitOp waits until the stream holds n events of type typ in tenant acme
// and returns the counts of every type then.
func (b *bundle) waitOp(t *testing.T, typ string, n int) map[string]int {
	t.Helper()
	var counts map[string]int
	testenv.Poll(t, 10*time.Second, fmt.Sprintf("%d %s events", n, typ), func() bool {
		counts = b.opCounts(t)
		return counts[typ] >= n
	})
	return counts
}

// lastOp is the latest event of type typ in tenant acme, with its
// particulars decoded into p.
func (b *bundle) lastOp(t *testing.T, typ string, p any) events.Event {
	t.Helper()
	str, err := b.js.Stream(context.Background(), events.StreamName)
	require.NoError(t, err)
	m, err := str.GetLastMsgForSubject(context.Background(), "events.acme."+typ)
	require.NoError(t, err)
	var e events.Event
	require.NoError(t, json.Unmarshal(m.Data, &e))
	require.NoError(t, json.Unmarshal(e.Particulars, p))
	return e
}

// appended is how many events of type typ the service appended,
// de-duplicated ones included.
func (b *bundle) appended(t *testing.T, typ string) int {
	t.Helper()
	b.svc.mu.Lock()
	a := b.svc.announcer
	b.svc.mu.Unlock()
	require.NotNil(t, a, "the service is not running")
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.appended[typ]
}

// requireFromWebhooker checks what every operational event carries.
func requireFromWebhooker(t *testing.T, e events.Event, endpointID string) {
	t.Helper()
	require.Equal(t, "acme", e.Tenant)
	require.Equal(t, events.Ref{Type: "webhook", ID: endpointID}, e.Eventable)
	require.Equal(t, events.Ref{Type: events.SystemCreator, ID: "webhooker"}, e.Creator)
}

// waitAnnounced waits until the endpoint's failing streak is remembered as
// announced.
func (b *bundle) waitAnnounced(t *testing.T, endpointID string) {
	t.Helper()
	testenv.Poll(t, 5*time.Second, "the failing streak remembered as announced", func() bool {
		var announced bool
		require.NoError(t, b.pool.QueryRow(context.Background(),
			`SELECT failing_announced IS NOT NULL AND failing_announced = failing_since FROM webhook.endpoints WHERE id = $1`, endpointID).Scan(&announced))
		return announced
	})
}

// waitEndCleared waits until the endpoint has no failing streak left to
// announce the end of.
func (b *bundle) waitEndCleared(t *testing.T, endpointID string) {
	t.Helper()
	testenv.Poll(t, 5*time.Second, "the end of the streak announced", func() bool {
		var pending bool
		require.NoError(t, b.pool.QueryRow(context.Background(),
			`SELECT failing_announced IS NOT NULL FROM webhook.endpoints WHERE id = $1`, endpointID).Scan(&pending))
		return !pending
	})
}

// switchable answers 500 while down, else 200.
func switchable(t *testing.T, down *atomic.Bool) *receiver {
	return newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
}

// TestAttemptFailingOncePerStreakThenRecovered: the third consecutive
// failure announces webhook.attempt_failing, later failures of the same
// streak announce nothing more, the first success announces
// webhook.recovered, a success without an announced streak announces
// nothing, and a new streak is announced again.
func TestAttemptFailingOncePerStreakThenRecovered(t *testing.T) {
	t.Parallel()
	b := setup(t, opOptions())
	var down atomic.Bool
	down.Store(true)
	rc := switchable(t, &down)
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"card.*"}, "retry_schedule": []int{3600}})
	attempts := 0
	send := func(eventID string) {
		b.publish(t, eventID)
		attempts++
		b.waitAttempts(t, id, attempts)
	}
	for i := range 2 {
		send(fmt.Sprintf("f%d", i))
	}
	send("f2")
	b.waitOp(t, delivery.TypeAttemptFailing, 1)
	var failing struct {
		EndpointID     string    `json:"endpoint_id"`
		Failures       int       `json:"failures"`
		FailingSince   time.Time `json:"failing_since"`
		LastErrorClass string    `json:"last_error_class"`
	}
	requireFromWebhooker(t, b.lastOp(t, delivery.TypeAttemptFailing, &failing), id)
	require.Equal(t, id, failing.EndpointID)
	require.Equal(t, 3, failing.Failures)
	require.Equal(t, "status", failing.LastErrorClass)
	b.waitAnnounced(t, id)

	// The streak goes on: nothing more is announced.
	send("f3")
	send("f4")

	// The first success ends it. Its webhook.recovered is queued after
	// anything f3 and f4 announced, so once it is in the stream the
	// count of attempt_failing is final.
	down.Store(false)
	b.clock.Add(time.Minute)
	send("ok1")
	counts := b.waitOp(t, delivery.TypeRecovered, 1)
	require.Equal(t, map[string]int{delivery.TypeAttemptFailing: 1, delivery.TypeRecovered: 1}, counts, "one attempt_failing per streak, not per attempt")
	require.Equal(t, 1, b.appended(t, delivery.TypeAttemptFailing), "announced once, not hidden by the stream's de-duplication")
	var rec struct {
		EndpointID   string    `json:"endpoint_id"`
		FailingSince time.Time `json:"failing_since"`
	}
	requireFromWebhooker(t, b.lastOp(t, delivery.TypeRecovered, &rec), id)
	require.True(t, failing.FailingSince.Equal(rec.FailingSince), "recovered names the streak it ends: %s, %s", failing.FailingSince, rec.FailingSince)
	b.waitEndCleared(t, id)

	// A success without an announced streak announces nothing; a new
	// streak is announced again, after which the count of recovered is
	// final.
	send("ok2")
	down.Store(true)
	b.clock.Add(time.Minute)
	for i := range 3 {
		send(fmt.Sprintf("g%d", i))
	}
	counts = b.waitOp(t, delivery.TypeAttemptFailing, 2)
	require.Equal(t, map[string]int{delivery.TypeAttemptFailing: 2, delivery.TypeRecovered: 1}, counts)
	require.Equal(t, 1, b.appended(t, delivery.TypeRecovered))
}

// TestAttemptExhaustedOncePerDelivery: a delivery that runs out of
// retries announces webhook.attempt_exhausted naming it; two failures
// are no failing streak.
func TestAttemptExhaustedOncePerDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t, opOptions())
	var down atomic.Bool
	down.Store(true)
	rc := switchable(t, &down)
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"card.*"}, "retry_schedule": []int{1}})
	b.publish(t, "x1")
	b.waitAttempts(t, id, 1)
	b.clock.Add(2 * time.Second)
	_, err := b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	d := b.waitStatus(t, id, "failed", 1)[0]
	counts := b.waitOp(t, delivery.TypeAttemptExhausted, 1)
	var ex struct {
		EndpointID     string `json:"endpoint_id"`
		DeliveryID     string `json:"delivery_id"`
		EventID        string `json:"event_id"`
		EventType      string `json:"event_type"`
		Attempts       int    `json:"attempts"`
		LastErrorClass string `json:"last_error_class"`
	}
	requireFromWebhooker(t, b.lastOp(t, delivery.TypeAttemptExhausted, &ex), id)
	require.Equal(t, id, ex.EndpointID)
	require.Equal(t, d.ID, ex.DeliveryID)
	require.Equal(t, "x1", ex.EventID)
	require.Equal(t, "card.closed", ex.EventType)
	require.Equal(t, 2, ex.Attempts)
	require.Equal(t, "status", ex.LastErrorClass)
	// The second failure's notices were queued together, attempt_failing
	// first: none.
	require.Equal(t, map[string]int{delivery.TypeAttemptExhausted: 1}, counts)

	// A manual retry that succeeds: the delivery is done, nothing else
	// is announced (no announced streak to end). Its success goes through
	// the result writer's tracker; a later streak on the same writer is
	// the sentinel that everything before it was announced.
	code, out := b.call(t, http.MethodPost, "/v1/deliveries/"+d.ID+"/retry", nil)
	require.Equal(t, http.StatusAccepted, code, "%v", out)
	down.Store(false)
	_, err = b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	b.waitStatus(t, id, "succeeded", 1)
	down.Store(true)
	b.clock.Add(time.Minute)
	for i := range 3 {
		b.publish(t, fmt.Sprintf("y%d", i))
		b.waitAttempts(t, id, 4+i)
	}
	counts = b.waitOp(t, delivery.TypeAttemptFailing, 1)
	require.Equal(t, map[string]int{delivery.TypeAttemptExhausted: 1, delivery.TypeAttemptFailing: 1}, counts)
}

// TestOperationalEventsDoNotLoop: an endpoint subscribed to every event
// (webhook.* included) that is down receives the operational events its
// failures cause, fails them until they run out of retries, and that
// announces nothing more: one attempt_failing and one attempt_exhausted per
// card event, however often the announcements themselves fail.
func TestOperationalEventsDoNotLoop(t *testing.T) {
	t.Parallel()
	b := setup(t, opOptions())
	var down atomic.Bool
	down.Store(true)
	rc := switchable(t, &down)
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"*"}, "retry_schedule": []int{1}})
	for i := range 3 {
		b.publish(t, fmt.Sprintf("l%d", i))
		b.waitAttempts(t, id, i+1)
	}
	b.waitOp(t, delivery.TypeAttemptFailing, 1)
	// The attempt_failing event reaches the endpoint and fails too.
	b.waitAttempts(t, id, 4)
	require.Len(t, b.deliveries(t, id), 4)

	// Retries: the three card deliveries and the attempt_failing one run
	// out of retries; three attempt_exhausted reach the endpoint and fail.
	b.clock.Add(2 * time.Second)
	_, err := b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	b.waitStatus(t, id, "failed", 4)
	b.waitOp(t, delivery.TypeAttemptExhausted, 3)
	b.waitAttempts(t, id, 8+3)
	require.Len(t, b.deliveries(t, id), 7)

	// Their retries fail as well: they run out of retries silently.
	b.clock.Add(2 * time.Second)
	_, err = b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	b.waitStatus(t, id, "failed", 7)

	// The endpoint comes back: its webhook.recovered is queued after
	// anything the failed operational deliveries could have announced.
	down.Store(false)
	b.clock.Add(time.Minute)
	b.publish(t, "l3")
	counts := b.waitOp(t, delivery.TypeRecovered, 1)
	require.Equal(t, map[string]int{delivery.TypeAttemptFailing: 1, delivery.TypeAttemptExhausted: 3, delivery.TypeRecovered: 1}, counts,
		"operational events whose deliveries failed announced nothing")
	require.Equal(t, 3, b.appended(t, delivery.TypeAttemptExhausted))
	var failures int
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT consecutive_failures FROM webhook.endpoints WHERE id = $1`, id).Scan(&failures))
	require.Zero(t, failures)
}

// stuckAppender blocks every append until released, then refuses it: a
// stream that is down.
type stuckAppender struct{ released chan struct{} }

func (s stuckAppender) Append(ctx context.Context, _ events.Event) (events.Result, error) {
	select {
	case <-s.released:
	case <-ctx.Done():
	}
	return events.Result{}, events.ErrUnavailable
}

// TestAnnouncerNeverHoldsUpOutcomes: with the stream down, queueing
// notices never blocks (the result writer goes on writing outcomes);
// what does not fit is dropped and logged, and close returns.
func TestAnnouncerNeverHoldsUpOutcomes(t *testing.T) {
	t.Parallel()
	stuck := stuckAppender{released: make(chan struct{})}
	a := newAnnouncer(nil, stuck, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go a.run()
	queued := make(chan struct{})
	go func() {
		for i := range 10_000 {
			a.notify(delivery.Notice{Type: delivery.TypeAttemptExhausted, Tenant: "acme", EndpointID: "ep", DeliveryID: fmt.Sprint(i), Attempts: 8})
		}
		close(queued)
	}()
	select {
	case <-queued:
	case <-time.After(10 * time.Second):
		t.Fatal("queueing notices blocked while the stream was down")
	}
	close(stuck.released)
	a.close()
	require.Zero(t, a.appended[delivery.TypeAttemptExhausted], "nothing was appended")
}
