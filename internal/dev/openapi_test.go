package dev_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/api"
	"github.com/eventline/eventline/internal/dev"
	"github.com/eventline/eventline/internal/observe"
	"github.com/eventline/eventline/internal/openapitest"
	"github.com/eventline/eventline/internal/testenv"
)

var pathParam = regexp.MustCompile(`\{[^}]*\}`)

// operation is "METHOD /path/{}" with parameter names left out, so a
// router pattern and a described path compare.
func operation(method, path string) string {
	return strings.ToUpper(method) + " " + pathParam.ReplaceAllString(path, "{}")
}

// TestEveryRouteIsDescribed walks the routers of every service as eventline
// dev runs them, and of the admin address, and holds them against
// api/openapi.yaml both ways: a route the document lacks fails, and so does
// a documented operation no service serves or one served by another
// service than the document says.
func TestEveryRouteIsDescribed(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan dev.Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- dev.Run(ctx, dev.Options{Dir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DatabaseURL: testenv.Database(t),
			Stdout: io.Discard, Log: slog.New(slog.DiscardHandler), Ready: func(i dev.Info) { ready <- i }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Logf("eventline dev stopped: %v", err)
		}
	})
	var info dev.Info
	select {
	case info = <-ready:
	case err := <-done:
		t.Fatalf("eventline dev stopped: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("eventline dev was not ready within 2 minutes")
	}

	served := map[string]string{} // operation → service
	routes := info.Routes
	routes[api.Admin] = observe.NewAdmin("127.0.0.1:0", observe.NewRegistry(), nil).Routes()
	require.Len(t, routes, 5, "ingest, projector, notifier, webhooker and admin")
	for svc, patterns := range routes {
		require.NotEmpty(t, patterns, svc)
		for _, p := range patterns {
			method, path, ok := strings.Cut(p, " ")
			require.True(t, ok, "%s serves %q for every method; register one route per method so it can be described", svc, p)
			op := operation(method, path)
			if prev, dup := served[op]; dup && op == operation("GET", "/openapi.json") {
				served[op] = api.All
				continue
			} else {
				require.False(t, dup, "%s is served by %s and %s", op, prev, svc)
			}
			served[op] = svc
		}
	}

	whole, err := api.Document()
	require.NoError(t, err)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(whole, &doc))
	described := map[string]string{}
	for path, item := range doc.Paths {
		for method, raw := range item {
			if method == "parameters" {
				continue
			}
			var o struct {
				Service string `json:"x-service"`
			}
			require.NoError(t, json.Unmarshal(raw, &o))
			described[operation(method, path)] = o.Service
		}
	}
	for op, svc := range served {
		d, ok := described[op]
		if !ok {
			t.Errorf("%s (served by %s) is not in api/openapi.yaml", op, svc)
		} else if d != svc {
			t.Errorf("%s is served by %s, but api/openapi.yaml says x-service: %s", op, svc, d)
		}
	}
	for op, svc := range described {
		if _, ok := served[op]; !ok {
			t.Errorf("%s is in api/openapi.yaml (x-service: %s) but no service serves it", op, svc)
		}
	}

	// dev serves the whole document, and live answers through dev agree with it.
	v := openapitest.Validator(t)
	do := func(method, path, body string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, info.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+info.Key)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		req.Body = io.NopCloser(strings.NewReader(body))
		if problem := openapitest.Exchange(v, req, []byte(body), resp.StatusCode, resp.Header, got); problem != "" {
			t.Errorf("%s %s answered %d: %s", method, path, resp.StatusCode, problem)
		}
		return resp.StatusCode, got
	}
	code, body := do(http.MethodGet, "/openapi.json", "")
	require.Equal(t, http.StatusOK, code)
	require.True(t, bytes.Equal(whole, body), "dev's /openapi.json is the whole document")
	code, _ = do(http.MethodPost, "/v1/events", `{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"},"parents":[{"type":"board","id":"b1"}]}`)
	require.Equal(t, http.StatusAccepted, code)
	testenv.Poll(t, 30*time.Second, "the event on the board's timeline", func() bool {
		code, body := do(http.MethodGet, "/v1/timelines/board/b1?sentences=true", "")
		return code == http.StatusOK && bytes.Contains(body, []byte(`"c1"`))
	})
	code, _ = do(http.MethodPost, "/v1/webhooks", `{"url":"`+info.URL+`/dev/webhook-sink","events":["card.*"]}`)
	require.Equal(t, http.StatusCreated, code)
	for _, path := range []string{"/v1/webhooks", "/v1/activity", "/v1/notification-rules", "/v1/sentence-templates", "/v1/browser-origins",
		"/v1/users/u1/notifications", "/v1/users/u1/preferences", "/v1/users/u1/watches", "/v1/rejected-events", "/v1/nope"} {
		do(http.MethodGet, path, "")
	}
	code, _ = do(http.MethodDelete, "/v1/events", "")
	require.Equal(t, http.StatusMethodNotAllowed, code)
}
