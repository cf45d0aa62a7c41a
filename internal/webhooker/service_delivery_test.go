package webhooker

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/attempt"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
	"github.com/eventline/eventline/pkg/events"
)

func TestDeliverySignedAndLogged(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	rc := newReceiver(t, nil)
	id, secret := b.createEndpoint(t, map[string]any{"url": rc.URL + "/hook", "events": []string{"card.*"}})
	ev := b.publish(t, "e1")
	b.publish(t, "e2-ignored") // same type: also delivered
	ds := b.waitAttempts(t, id, 2)
	require.Len(t, ds, 2)

	reqs := rc.all()
	require.Len(t, reqs, 2)
	var first received
	for _, r := range reqs {
		if r.header.Get("webhook-id") == "e1" {
			first = r
		}
	}
	require.NotNil(t, first.header)
	require.Equal(t, "application/json", first.header.Get("Content-Type"))
	require.Equal(t, "eventline/dev", first.header.Get("User-Agent"))
	ts := first.header.Get("webhook-timestamp")
	require.Equal(t, b.clock.Now().Unix(), mustInt(t, ts))

	// The reference Standard Webhooks library verifies the signature.
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	require.NoError(t, wh.Verify(first.body, first.header))

	var body map[string]any
	require.NoError(t, json.Unmarshal(first.body, &body))
	require.Equal(t, "e1", body["id"])
	require.Equal(t, "card.closed", body["type"])
	require.EqualValues(t, ev.Seq, body["seq"])
	require.Equal(t, "acme", body["tenant"])

	for _, d := range b.waitStatus(t, id, "succeeded", 2) {
		require.Len(t, d.Attempts, 1)
		require.Equal(t, 200, d.Attempts[0].StatusCode)
	}
}

func (b *bundle) waitStatus(t *testing.T, endpointID, status string, n int) []delivery.Delivery {
	t.Helper()
	var out []delivery.Delivery
	require.Eventually(t, func() bool {
		out = out[:0]
		for _, d := range b.deliveries(t, endpointID) {
			if string(d.Status) == status {
				out = append(out, d)
			}
		}
		return len(out) >= n
	}, 10*time.Second, 10*time.Millisecond, "want %d deliveries %s", n, status)
	return out
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, json.Unmarshal([]byte(s), &n))
	return n
}

// TestRetryAfterFailure: 500, then success on the scheduled retry (fake
// clock), with the same webhook-id.
func TestRetryAfterFailure(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte("boom"))
		}
	})
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"*"}})
	b.publish(t, "e1")
	ds := b.waitStatusAttempts(t, id, 1)
	d := ds[0]
	require.Equal(t, delivery.StatusPending, d.Status)
	require.Equal(t, 500, d.Attempts[0].StatusCode)
	require.Equal(t, "status", d.Attempts[0].ErrorClass)
	require.Equal(t, "boom", d.Attempts[0].Response)
	require.NotNil(t, d.NextAttemptAt)
	require.WithinDuration(t, b.clock.Now().Add(5*time.Second), *d.NextAttemptAt, time.Second, "the first retry waits 5 s")

	n, err := b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	require.Zero(t, n, "not due yet")
	b.clock.Add(6 * time.Second)
	n, err = b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	d = b.waitStatus(t, id, "succeeded", 1)[0]
	require.Len(t, d.Attempts, 2)
	reqs := rc.all()
	require.Equal(t, reqs[0].header.Get("webhook-id"), reqs[1].header.Get("webhook-id"), "same webhook-id on every retry")
	// Both outcomes are counted once logged: the first recorded with its
	// delivery, the retry's by the result writer.
	require.Equal(t, 2.0, testenv.CounterValue(t, b.svc.metrics.logged))
	for _, h := range []string{"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature", "Content-Type", "User-Agent"} {
		require.NotEmpty(t, reqs[1].header.Get(h), h)
	}
}

// waitStatusAttempts waits until every delivery has at least n attempts.
func (b *bundle) waitStatusAttempts(t *testing.T, endpointID string, n int) []delivery.Delivery {
	t.Helper()
	var ds []delivery.Delivery
	require.Eventually(t, func() bool {
		ds = b.deliveries(t, endpointID)
		if len(ds) == 0 {
			return false
		}
		for _, d := range ds {
			if len(d.Attempts) < n {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond)
	return ds
}

func TestRetryAfterHeaderIsHonoured(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"*"}})
	b.publish(t, "e1")
	d := b.waitStatusAttempts(t, id, 1)[0]
	require.Equal(t, 429, d.Attempts[0].StatusCode)
	require.WithinDuration(t, b.clock.Now().Add(120*time.Second), *d.NextAttemptAt, time.Second)
}

// TestScheduleExhaustedThenManualRetry walks the whole default schedule
// with the fake clock (hours, not waited for), then retries by hand.
func TestScheduleExhaustedThenManualRetry(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	fail := true
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if fail {
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	// card.*, not *: the failing streak's webhook.attempt_failing would be
	// one more delivery to it (docs/webhooks.md "Operational events").
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"card.*"}})
	b.publish(t, "e1")
	b.waitStatusAttempts(t, id, 1)
	for i, wait := range endpoint.DefaultRetrySchedule {
		b.clock.Add(wait)
		n, err := b.svc.ScheduleNow(context.Background())
		require.NoError(t, err)
		require.Equal(t, 1, n, "retry %d due after %s", i+1, wait)
		b.waitStatusAttempts(t, id, i+2)
	}
	d := b.waitStatus(t, id, "failed", 1)[0]
	require.Len(t, d.Attempts, 1+len(endpoint.DefaultRetrySchedule))
	require.Nil(t, d.NextAttemptAt)

	fail = false
	code, _ := b.call(t, http.MethodPost, "/v1/deliveries/"+d.ID+"/retry", nil)
	require.Equal(t, http.StatusAccepted, code)
	n, err := b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	d = b.waitStatus(t, id, "succeeded", 1)[0]
	require.Len(t, d.Attempts, 2+len(endpoint.DefaultRetrySchedule))
}

func TestGoneDisablesEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusGone) })
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"card.*"}})
	b.publish(t, "e1")
	d := b.waitStatus(t, id, "failed", 1)[0]
	require.Equal(t, 410, d.Attempts[0].StatusCode)
	require.Eventually(t, func() bool {
		e, err := b.svc.Store().GetEndpoint(context.Background(), "acme", id)
		return err == nil && !e.Enabled && strings.Contains(e.DisabledReason, "410")
	}, 5*time.Second, 10*time.Millisecond)
	requireDisabledEvent(t, b, id)
}

// requireDisabledEvent finds the webhook.disabled event in the stream.
func requireDisabledEvent(t *testing.T, b *bundle, endpointID string) {
	t.Helper()
	str, err := b.js.Stream(context.Background(), events.StreamName)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		m, err := str.GetLastMsgForSubject(context.Background(), "events.acme.webhook.disabled")
		if err != nil {
			return false
		}
		var e events.Event
		return json.Unmarshal(m.Data, &e) == nil && e.Eventable.ID == endpointID && e.Creator.Type == "system"
	}, 5*time.Second, 10*time.Millisecond)
}

func TestRedirectIsAFailureNotFollowed(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	canary := newReceiver(t, nil)
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, canary.URL, http.StatusFound)
	})
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"*"}})
	b.publish(t, "e1")
	d := b.waitStatusAttempts(t, id, 1)[0]
	require.Equal(t, 302, d.Attempts[0].StatusCode)
	require.Equal(t, "status", d.Attempts[0].ErrorClass)
	require.Equal(t, delivery.StatusPending, d.Status, "a 3xx is retried like any failure")
	require.Empty(t, canary.all(), "the redirect was not followed")
}

func TestTimeoutResetAndHugeResponse(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true, timeout: 300 * time.Millisecond})
	release := make(chan struct{})
	hang := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { <-release })
	t.Cleanup(func() { close(release) }) // runs before hang.Close, which waits for handlers
	reset := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			if tcp, ok := conn.(interface{ SetLinger(int) error }); ok {
				_ = tcp.SetLinger(0)
			}
			_ = conn.Close()
		}
	})
	huge := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		chunk := []byte(strings.Repeat("x", 1<<20))
		for range 10 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	hangID, _ := b.createEndpoint(t, map[string]any{"url": hang.URL, "events": []string{"*"}})
	resetID, _ := b.createEndpoint(t, map[string]any{"url": reset.URL, "events": []string{"*"}})
	hugeID, _ := b.createEndpoint(t, map[string]any{"url": huge.URL, "events": []string{"*"}})
	b.publish(t, "e1")

	d := b.waitStatusAttempts(t, hangID, 1)[0]
	require.Equal(t, "timeout", d.Attempts[0].ErrorClass)
	d = b.waitStatusAttempts(t, resetID, 1)[0]
	require.Contains(t, []string{"reset", "network"}, d.Attempts[0].ErrorClass)
	d = b.waitStatus(t, hugeID, "succeeded", 1)[0]
	require.LessOrEqual(t, len(d.Attempts[0].Response), attempt.MaxLoggedResponse)
}

// TestExpiredClaimIsAttemptedByTheScheduler: deliveries committed by a
// fan-out that never attempted them (its replica died) are attempted once
// their claim expires; deliveries whose first attempt was logged are not
// attempted again, and nothing is left due afterwards.
func TestExpiredClaimIsAttemptedByTheScheduler(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	rc := newReceiver(t, nil)
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"card.closed"}})
	b.publish(t, "e1")
	b.waitStatus(t, id, "succeeded", 1)

	// Another replica commits a delivery of e2 and its claim, then dies.
	// (e2 is a card.opened, which the live fan-out here does not match.)
	ev := events.Event{ID: "e2", Tenant: "acme", Action: "opened", Eventable: events.Ref{Type: "card", ID: "c42"}, Creator: events.Ref{Type: "user", ID: "u7"}}
	res, err := b.pub.Append(context.Background(), ev)
	require.NoError(t, err)
	require.NoError(t, ev.Normalize(time.Now()))
	ev.Seq = res.Seq
	ep, ok := b.svc.registry.Get(id)
	require.True(t, ok)
	j := delivery.Job{DeliveryID: delivery.NewID(), Tenant: ev.Tenant, EndpointID: ep.ID, Event: ev, Attempt: 1}
	jobs, _, err := b.svc.ledger.Record(context.Background(), []delivery.Item{{Jobs: []delivery.Job{j}}}, b.clock.Now(), b.clock.Now().Add(time.Minute))
	require.NoError(t, err)
	require.Len(t, jobs[0], 1)
	n, err := b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	require.Zero(t, n, "claimed until the claim expires")

	b.clock.Add(61 * time.Second)
	n, err = b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n, "only the never-attempted delivery")
	ds := b.waitStatus(t, id, "succeeded", 2)
	for _, d := range ds {
		require.Len(t, d.Attempts, 1, "delivery of %s", d.EventID)
	}
	require.Len(t, rc.all(), 2)
	require.Equal(t, "e2", rc.all()[1].header.Get("webhook-id"))

	b.clock.Add(time.Hour)
	n, err = b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	require.Zero(t, n)
	var due, claims int
	require.NoError(t, b.pool.QueryRow(context.Background(), "SELECT (SELECT count(*) FROM webhook.due), (SELECT count(*) FROM webhook.claims)").Scan(&due, &claims))
	require.Zero(t, due, "nothing left due")
	require.Zero(t, claims, "expired claims are gone")
}
