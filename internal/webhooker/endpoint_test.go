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

	"github.com/ThreeDotsLabs/watermill/message"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/consume"
	"github.com/eventline/eventline/internal/webhooker/attempt"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
	"github.com/eventline/eventline/pkg/events"
)

func TestSecretRotationSendsBothSignatures(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	rc := newReceiver(t, nil)
	id, oldSecret := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"*"}})
	code, out := b.call(t, http.MethodPost, "/v1/webhooks/"+id+"/secret/rotate", map[string]any{"grace_seconds": 3600})
	require.Equal(t, http.StatusOK, code, "%v", out)
	newSecret := out["secret"].(string)
	require.NotEqual(t, oldSecret, newSecret)
	require.Eventually(t, func() bool {
		e, _ := b.svc.registry.Get(id)
		return len(e.ActiveSecrets(b.clock.Now())) == 2
	}, 5*time.Second, 5*time.Millisecond)

	b.publish(t, "during-grace")
	b.waitStatus(t, id, "succeeded", 1)
	req := rc.all()[0]
	require.Len(t, strings.Fields(req.header.Get("webhook-signature")), 2, "old and new signatures during the grace period")
	for _, s := range []string{oldSecret, newSecret} {
		wh, err := standardwebhooks.NewWebhook(s)
		require.NoError(t, err)
		require.NoError(t, wh.Verify(req.body, req.header), "verifies with either secret")
	}

	b.clock.Add(2 * time.Hour) // grace over
	b.publish(t, "after-grace")
	b.waitStatus(t, id, "succeeded", 2)
	req = rc.all()[1]
	require.Len(t, strings.Fields(req.header.Get("webhook-signature")), 1)
	old, _ := standardwebhooks.NewWebhook(oldSecret)
	require.Error(t, old.Verify(req.body, req.header), "the old secret no longer signs")
}

// TestReplaySendsEventsNeverAttempted: an endpoint created after events
// were fanned out gets them by replaying the range.
func TestReplaySendsEventsNeverAttempted(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	since := time.Now().Add(-time.Minute)
	for _, id := range []string{"old1", "old2", "old3"} {
		b.publish(t, id)
	}
	other, err := b.pub.Append(context.Background(), events.Event{ID: "other", Tenant: "acme", Action: "created",
		Eventable: events.Ref{Type: "comment", ID: "m1"}, Creator: events.Ref{Type: "user", ID: "u1"}})
	require.NoError(t, err)
	// An endpoint gets the events the fan-out handles once the registry
	// has it, however old: wait until the fan-out has passed these, so
	// only a replay sends them (it lagged under load, and the new endpoint
	// got them).
	b.waitFannedOut(t, other.Seq)
	rc := newReceiver(t, nil)
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"card.closed"}})
	require.Empty(t, b.deliveries(t, id))

	code, out := b.call(t, http.MethodPost, "/v1/webhooks/"+id+"/replay", map[string]any{"since": since, "until": time.Now().Add(time.Minute)})
	require.Equal(t, http.StatusAccepted, code, "%v", out)
	require.EqualValues(t, 3, out["deliveries"], "the three card.closed events, not the comment")
	_, err = b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	b.waitStatus(t, id, "succeeded", 3)

	// Replaying again re-sends the same deliveries (same webhook-id), no new ones.
	code, out = b.call(t, http.MethodPost, "/v1/webhooks/"+id+"/replay", map[string]any{"since": since, "until": time.Now().Add(time.Minute)})
	require.Equal(t, http.StatusAccepted, code, "%v", out)
	require.EqualValues(t, 3, out["deliveries"])
	_, err = b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(rc.all()) == 6 }, 5*time.Second, 10*time.Millisecond)
	require.Len(t, b.deliveries(t, id), 3)

	code, _ = b.call(t, http.MethodPost, "/v1/webhooks/"+id+"/replay", map[string]any{})
	require.Equal(t, http.StatusUnprocessableEntity, code, "since is required")
}

// TestRedeliveredEventCreatesNoSecondDelivery runs the fan-out handler
// twice on the same message, as a JetStream redelivery would.
func TestRedeliveredEventCreatesNoSecondDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	rc := newReceiver(t, nil)
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"*"}})
	ev := b.publish(t, "e1")
	b.waitStatus(t, id, "succeeded", 1)

	body, err := json.Marshal(ev)
	require.NoError(t, err)
	var submitted atomic.Int64
	held := newLeases(b.svc.ledger, time.Minute, b.clock.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	inserts := newInserts(b.svc.ledger, nil, held, b.clock.Now, time.Minute)
	go inserts.Run()
	defer inserts.Close()
	f := &fanout{pool: b.pool, inserts: inserts, registry: b.svc.registry, leases: held, submit: func(js ...delivery.Job) []delivery.Job { submitted.Add(int64(len(js))); return nil },
		now: b.clock.Now, claim: time.Minute, consumer: "webhooker", log: slog.New(slog.NewTextHandler(io.Discard, nil)), gate: &firstGate{}}
	msg := message.NewMessage("x", body)
	msg.Metadata.Set(consume.MetaSubject, "events.acme.card.closed")
	msg.Metadata.Set(consume.MetaStreamSeq, "1")
	for range 2 {
		require.NoError(t, f.handle(msg))
	}
	// With attempts made first: a redelivery records first, and so does a
	// first delivery of an event older than MaxAge (a consumer created
	// anew).
	f.gate.cfg = FirstAttemptConfig{Wait: time.Second, Max: time.Second, MaxAge: time.Hour}
	msg.Metadata.Set(consume.MetaDelivered, "2")
	require.NoError(t, f.handle(msg))
	f.gate.cfg.MaxAge = time.Nanosecond
	msg.Metadata.Set(consume.MetaDelivered, "1")
	require.NoError(t, f.handle(msg))
	require.Zero(t, submitted.Load(), "no new delivery, no new attempt")
	require.Len(t, b.deliveries(t, id), 1)
	require.Len(t, rc.all(), 1)
}

// TestAutoDisableAfterFailuresSpanningADay: 20 consecutive failures over
// at least 24 h (fake clock) disable the endpoint and record
// webhook.disabled; enabling resets the tracker.
func TestAutoDisableAfterFailuresSpanningADay(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true, cfg: Config{Disable: delivery.DisableRule{Failures: 20, Span: 24 * time.Hour}}})
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"card.*"}, "retry_schedule": []int{3600, 3600, 3600}})
	// 20 events, one failed attempt each, spread over 25h20m.
	for i := range 20 {
		b.publish(t, "e"+string(rune('a'+i)))
		b.waitAttempts(t, id, i+1)
		if i < 19 {
			b.clock.Add(80 * time.Minute)
		}
	}
	require.Eventually(t, func() bool {
		e, err := b.svc.Store().GetEndpoint(context.Background(), "acme", id)
		return err == nil && !e.Enabled && strings.Contains(e.DisabledReason, "consecutive")
	}, 5*time.Second, 10*time.Millisecond)
	requireDisabledEvent(t, b, id)

	code, out := b.call(t, http.MethodPost, "/v1/webhooks/"+id+"/enable", nil)
	require.Equal(t, http.StatusOK, code, "%v", out)
	var failures int
	require.NoError(t, b.pool.QueryRow(context.Background(), "SELECT consecutive_failures FROM webhook.endpoints WHERE id = $1", id).Scan(&failures))
	require.Zero(t, failures, "enabling resets the failure tracker")
}

// TestFailuresWithinADayDoNotDisable: 25 quick failures are not enough.
func TestFailuresWithinADayDoNotDisable(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"*"}})
	for i := range 25 {
		b.publish(t, "q"+string(rune('a'+i)))
	}
	b.waitAttempts(t, id, 25)
	e, err := b.svc.Store().GetEndpoint(context.Background(), "acme", id)
	require.NoError(t, err)
	require.True(t, e.Enabled)
}

// TestSlowEndpointDoesNotSlowHealthyOnes: one endpoint answers only after a
// long time; deliveries to a healthy endpoint all complete meanwhile.
func TestSlowEndpointDoesNotSlowHealthyOnes(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true, timeout: 20 * time.Second, cfg: Config{Dispatch: attempt.DispatchConfig{Workers: 32, PerEndpoint: 4}}})
	release := make(chan struct{})
	slow := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { <-release })
	t.Cleanup(func() { close(release) })
	healthy := newReceiver(t, nil)
	slowID, _ := b.createEndpoint(t, map[string]any{"url": slow.URL, "events": []string{"*"}})
	healthyID, _ := b.createEndpoint(t, map[string]any{"url": healthy.URL, "events": []string{"*"}})
	evs := make([]events.Event, 200)
	for i := range evs {
		evs[i] = events.Event{Tenant: "acme", Action: "moved", Eventable: events.Ref{Type: "card", ID: "c1"}, Creator: events.Ref{Type: "user", ID: "u1"}}
	}
	_, err := b.pub.AppendBatch(context.Background(), evs)
	require.NoError(t, err)
	b.waitStatus(t, healthyID, "succeeded", 200)
	require.LessOrEqual(t, len(slow.all()), 4, "the slow endpoint holds at most its own cap of attempts")
	require.Empty(t, b.waitNoneSucceeded(t, slowID))
}

func (b *bundle) waitNoneSucceeded(t *testing.T, id string) []delivery.Delivery {
	t.Helper()
	var done []delivery.Delivery
	for _, d := range b.deliveries(t, id) {
		if d.Status == "succeeded" {
			done = append(done, d)
		}
	}
	return done
}

func TestSlackFormat(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	rc := newReceiver(t, nil)
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"*"}, "format": "slack"})
	// The tenant's own template (internal/render) applies to Slack too,
	// with the particulars' title.
	_, err := b.pool.Exec(context.Background(), `INSERT INTO eventline.sentence_templates (tenant, event_type, template)
		VALUES ('acme', 'card.moved', '{creator} dragged *{title}* to the {to_column} column')`)
	require.NoError(t, err)
	_, err = b.pub.Append(context.Background(), events.Event{Tenant: "acme", Action: "closed", Eventable: events.Ref{Type: "card", ID: "<b>c42</b> & co"},
		Creator: events.Ref{Type: "user", ID: "u7"}, Parents: []events.Ref{{Type: "board", ID: "b1"}}})
	require.NoError(t, err)
	b.waitStatus(t, id, "succeeded", 1)
	var msg map[string]string
	require.NoError(t, json.Unmarshal(rc.all()[0].body, &msg))
	require.Equal(t, "u7 closed *&lt;b&gt;c42&lt;/b&gt; &amp; co* in board b1", msg["text"])

	_, err = b.pub.Append(context.Background(), events.Event{Tenant: "acme", Action: "moved", Eventable: events.Ref{Type: "card", ID: "c1"},
		Creator: events.Ref{Type: "user", ID: "ana"}, Particulars: json.RawMessage(`{"title":"Fix login","to_column":"Done"}`)})
	require.NoError(t, err)
	b.waitStatus(t, id, "succeeded", 2)
	texts := map[string]bool{}
	for _, d := range rc.all() {
		require.NoError(t, json.Unmarshal(d.body, &msg))
		texts[msg["text"]] = true
	}
	require.True(t, texts["ana dragged *Fix login* to the Done column"], "%v", texts)
}

func TestEndpointAPIValidationAndSSRF(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: false})
	for _, tc := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"events": []string{"*"}}, "url"},
		{map[string]any{"url": "ftp://example.com/x", "events": []string{"*"}}, "url"},
		{map[string]any{"url": "http://127.0.0.1:9/hook", "events": []string{"*"}}, "url"},
		{map[string]any{"url": "http://[::1]/hook", "events": []string{"*"}}, "url"},
		{map[string]any{"url": "http://[::ffff:127.0.0.1]/hook", "events": []string{"*"}}, "url"},
		{map[string]any{"url": "http://169.254.169.254/latest", "events": []string{"*"}}, "url"},
		{map[string]any{"url": "http://10.0.0.1/", "events": []string{"*"}}, "url"},
		{map[string]any{"url": "http://localhost/", "events": []string{"*"}}, "url"},
		{map[string]any{"url": "http://93.184.216.34/", "events": []string{}}, "events"},
		{map[string]any{"url": "http://93.184.216.34/", "events": []string{"Card.closed"}}, "events[0]"},
		{map[string]any{"url": "http://93.184.216.34/", "events": []string{"*"}, "format": "xml"}, "format"},
		{map[string]any{"url": "http://93.184.216.34/", "events": []string{"*"}, "retry_schedule": []int{0}}, "retry_schedule[0]"},
		{map[string]any{"url": "http://93.184.216.34/", "events": []string{"*"}, "colour": "red"}, "body"},
	} {
		code, out := b.call(t, http.MethodPost, "/v1/webhooks", tc.body)
		require.Equal(t, http.StatusUnprocessableEntity, code, "%v: %v", tc.body, out)
		errs := out["errors"].([]any)
		require.Equal(t, tc.field, errs[0].(map[string]any)["field"], "%v: %v", tc.body, out)
	}
	// A public IP literal is accepted (no connection is made at create time).
	code, out := b.call(t, http.MethodPost, "/v1/webhooks", map[string]any{"url": "https://93.184.216.34/hook", "events": []string{"card.*", "*.closed"}})
	require.Equal(t, http.StatusCreated, code, "%v", out)
	require.True(t, strings.HasPrefix(out["secret"].(string), "whsec_"))
	id := out["id"].(string)

	code, out = b.call(t, http.MethodPatch, "/v1/webhooks/"+id, map[string]any{"description": "ops", "events": []string{"card.closed"}})
	require.Equal(t, http.StatusOK, code, "%v", out)
	require.Equal(t, "ops", out["description"])
	require.Empty(t, out["secret"], "secrets are shown only at creation and rotation")
	code, out = b.call(t, http.MethodGet, "/v1/webhooks", nil)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, out["webhooks"], 1)
	code, _ = b.call(t, http.MethodDelete, "/v1/webhooks/"+id, nil)
	require.Equal(t, http.StatusNoContent, code)
	code, _ = b.call(t, http.MethodGet, "/v1/webhooks/"+id, nil)
	require.Equal(t, http.StatusNotFound, code)
}

// TestRegistryReplicasSeeChangesWithinASecond: two replicas' registries
// follow creates, changes and deletes.
func TestRegistryReplicasSeeChangesWithinASecond(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	replicas := []*endpoint.Registry{endpoint.NewRegistry(b.svc.Store(), 100*time.Millisecond, log), endpoint.NewRegistry(b.svc.Store(), 100*time.Millisecond, log)}
	for _, r := range replicas {
		go r.Run(ctx)
	}
	ev := events.Event{Tenant: "acme", Type: "card.closed", Action: "closed", Eventable: events.Ref{Type: "card", ID: "c1"}}
	seen := func(want int) {
		t.Helper()
		for _, r := range replicas {
			require.Eventually(t, func() bool { return len(r.Match(ev)) == want }, time.Second, 5*time.Millisecond)
		}
	}
	rc := newReceiver(t, nil)
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"card.closed"}})
	seen(1)
	code, _ := b.call(t, http.MethodPatch, "/v1/webhooks/"+id, map[string]any{"events": []string{"comment.*"}})
	require.Equal(t, http.StatusOK, code)
	seen(0)
	code, _ = b.call(t, http.MethodPatch, "/v1/webhooks/"+id, map[string]any{"events": []string{"*"}})
	require.Equal(t, http.StatusOK, code)
	seen(1)
	code, _ = b.call(t, http.MethodDelete, "/v1/webhooks/"+id, nil)
	require.Equal(t, http.StatusNoContent, code)
	seen(0)
}

func TestPruneLogKeepsRecentAndPending(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true, cfg: Config{Retention: time.Hour}})
	rc := newReceiver(t, nil)
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"*"}})
	b.publish(t, "e1")
	b.waitStatus(t, id, "succeeded", 1)
	// Age the first delivery: an id and a created_at from two hours ago.
	// The smallest UUIDv7 of that millisecond (as the ledger's pruning
	// compares ids).
	ms := time.Now().Add(-2 * time.Hour).UnixMilli()
	old := fmt.Sprintf("%08x-%04x-7000-8000-000000000000", ms>>16, ms&0xffff)
	ds := b.deliveries(t, id)
	_, err := b.pool.Exec(context.Background(), `WITH a AS (UPDATE webhook.attempts SET delivery_id = $2 WHERE delivery_id = $1)
		UPDATE webhook.deliveries SET id = $2, created_at = now() - interval '2 hours' WHERE id = $1`, ds[0].ID, old)
	require.NoError(t, err)
	b.publish(t, "e2")
	// The service's own pruning (at start, then every minute) may run
	// between the aging and here and take the old delivery itself: wait for
	// e2 alone, and let the explicit call prune what is left.
	require.Eventually(t, func() bool {
		for _, d := range b.deliveries(t, id) {
			if d.EventID == "e2" && d.Status == "succeeded" {
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "e2 delivered")
	b.clock.Add(0)
	n, err := b.svc.PruneLog(context.Background())
	require.NoError(t, err)
	require.LessOrEqual(t, n, int64(1), "at most the one old delivery")
	ds = b.deliveries(t, id)
	require.Len(t, ds, 1)
	require.Equal(t, "e2", ds[0].EventID)
	var attempts int
	require.NoError(t, b.pool.QueryRow(context.Background(), "SELECT count(*) FROM webhook.attempts").Scan(&attempts))
	require.Equal(t, 1, attempts)
}
