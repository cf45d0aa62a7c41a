package dev_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/cloudevent"
	"github.com/eventline/eventline/pkg/webhook"
)

// TestCloudEventsRoundTrip: a CloudEvent sent by the official Go SDK to
// ingest reaches an endpoint with format "cloudevents", signed, where the
// SDK's receiver reads it back with the same id, type, time and data.
func TestCloudEventsRoundTrip(t *testing.T) {
	ctx := context.Background()
	p := startDev(t, t.TempDir(), testenv.Database(t))
	defer p.stop(t)

	// The receiver: the SDK's HTTP handler behind a check of the signature.
	var secret string
	received := make(chan cloudevents.Event, 16)
	sdk, err := cloudevents.NewHTTP()
	require.NoError(t, err)
	handler, err := cloudevents.NewHTTPReceiveHandler(ctx, sdk, func(e cloudevents.Event) { received <- e })
	require.NoError(t, err)
	badSignature := make(chan error, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(secret, r.Header, body); err != nil {
			badSignature <- err
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != cloudevent.MediaType {
			badSignature <- fmt.Errorf("content type %q, want %s", ct, cloudevent.MediaType)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		handler.ServeHTTP(w, r)
	}))
	defer srv.Close()

	code, body := p.do(t, "POST", "/v1/webhooks", `{"url":"`+srv.URL+`","events":["card.*"],"format":"cloudevents"}`)
	require.Equal(t, http.StatusCreated, code, "%s", body)
	var ep struct{ Secret string }
	require.NoError(t, json.Unmarshal(body, &ep))
	secret = ep.Secret

	// Wait until the webhooker knows the endpoint: a probe reaches it.
	n := 0
	testenv.Poll(t, 30*time.Second, "a probe reaches the cloudevents endpoint", func() bool {
		n++
		code, body := p.do(t, "POST", "/v1/events", `{"action":"probed","eventable":{"type":"card","id":"probe"},"creator":{"type":"user","id":"t"}}`)
		require.Equal(t, http.StatusAccepted, code, "%s", body)
		select {
		case <-received:
			return true
		case <-time.After(2 * time.Second):
			return false
		}
	})

	client, err := cloudevents.NewClientHTTP(cehttp.WithTarget(p.url+"/v1/events"), cehttp.WithHeader("Authorization", "Bearer "+p.key))
	require.NoError(t, err)
	sent := cloudevents.NewEvent()
	sent.SetID("ce-round-1")
	sent.SetSource("urn:example:boards")
	sent.SetType("card.closed")
	sent.SetTime(time.Date(2026, 12, 1, 10, 30, 0, 123456000, time.UTC))
	data := map[string]any{
		"eventable":   map[string]any{"type": "card", "id": "c42"},
		"creator":     map[string]any{"type": "user", "id": "u7"},
		"parents":     []any{map[string]any{"type": "board", "id": "b1"}},
		"particulars": map[string]any{"title": "Fix login", "n": 3},
	}
	require.NoError(t, sent.SetData(cloudevents.ApplicationJSON, data))
	res := client.Send(binding.WithForceStructured(ctx), sent)
	require.True(t, cloudevents.IsACK(res), "ingest accepts the SDK's CloudEvent: %v", res)

	var got cloudevents.Event
	for got.ID() != "ce-round-1" {
		select {
		case got = <-received:
		case err := <-badSignature:
			t.Fatalf("a delivery was not a signed CloudEvent: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("the CloudEvent was not delivered within 30 s")
		}
	}
	require.Equal(t, sent.Type(), got.Type())
	require.True(t, sent.Time().Equal(got.Time()), "time %s, sent %s", got.Time(), sent.Time())
	require.Equal(t, "/tenants/dev", got.Source())
	require.Equal(t, "card/c42", got.Subject())
	require.NotEmpty(t, got.Extensions()["sequence"])
	var gotData, sentData any
	require.NoError(t, json.Unmarshal(got.Data(), &gotData))
	require.NoError(t, json.Unmarshal(sent.Data(), &sentData))
	require.Equal(t, sentData, gotData, "data round-trips")

	// The same event again is a duplicate, also as CloudEvents.
	post := func(ct, body string) (int, []byte) {
		req, err := http.NewRequest(http.MethodPost, p.url+"/v1/events", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+p.key)
		req.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	one := `{"specversion":"1.0","id":"ce-b1","source":"urn:x","type":"card.published","data":{"eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}}}`
	two := `{"specversion":"1.0","id":"ce-b2","source":"urn:x","type":"comment.created","time":"2026-12-01T10:00:00Z","data":{"eventable":{"type":"comment","id":"m1"},"creator":{"type":"user","id":"u1"},"parents":[{"type":"card","id":"c1"}]}}`
	code, body = post(cloudevent.BatchMediaType, "["+one+","+two+"]")
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	require.Contains(t, string(body), `"id":"ce-b2"`)

	// Errors are named by CloudEvents attribute.
	for _, c := range []struct{ body, field string }{
		{`{"specversion":"1.0","id":"x1","type":"card.closed","data":{"eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}}}`, "source"},
		{`{"specversion":"1.0","id":"x2","source":"urn:x","type":"card.closed","data":{"eventable":{"type":"board","id":"c1"},"creator":{"type":"user","id":"u1"}}}`, "type"},
		{`{"specversion":"1.0","id":"x3","source":"urn:x","type":"card.Closed!","data":{"eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}}}`, "type"},
		{`{"specversion":"1.0","id":"x4","source":"urn:x","type":"card.closed","data":{"eventable":{"type":"card","id":"c1"}}}`, "data.creator"},
		{`{"specversion":"1.0","id":"x5","source":"urn:x","type":"card.closed","time":"yesterday","data":{"eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}}}`, "time"},
	} {
		code, body := post(cloudevent.MediaType, c.body)
		require.Equal(t, http.StatusUnprocessableEntity, code, "%s", c.body)
		require.Contains(t, string(body), `"field":"`+c.field, "%s -> %s", c.body, body)
	}
}
