package ingest_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/ingest"
	"github.com/eventline/eventline/pkg/events"
)

// instantAppender acknowledges every event at once: the handler benchmarks
// measure the HTTP path's own CPU, not NATS.
type instantAppender struct{}

func (instantAppender) AppendNormalized(_ context.Context, es []events.Event) ([]events.Result, error) {
	out := make([]events.Result, len(es))
	for i, e := range es {
		out[i] = events.Result{ID: e.ID, Seq: uint64(i + 1)}
	}
	return out, nil
}

type benchKeys struct{}

func (benchKeys) Authenticate(context.Context, string) (apikey.Key, error) {
	return apikey.Key{ID: "k", Tenant: "acme", Scopes: []string{apikey.ScopeIngest}}, nil
}

// benchHandler serves POST /v1/events over an instant appender.
func benchHandler(b *testing.B, cfg ingest.Config) http.Handler {
	b.Helper()
	cfg.RateLimit = 0
	svc := ingest.NewService(instantAppender{}, benchKeys{}, cfg, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	go svc.Run(context.Background())
	b.Cleanup(svc.Close)
	mux := http.NewServeMux()
	svc.Routes(mux)
	return mux
}

const benchEvent = `{"action":"closed","eventable":{"type":"card","id":"c42"},"creator":{"type":"user","id":"u7"},"parents":[{"type":"board","id":"b1"}]}`

// serveOne posts one single-event request, as concurrent clients would.
func serveOne(b *testing.B, h http.Handler, traceparent string) {
	b.Helper()
	cpu0 := ingest.CPUTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(benchEvent))
			req.Header.Set("Authorization", "Bearer x")
			req.Header.Set("Content-Type", "application/json")
			if traceparent != "" {
				req.Header.Set("traceparent", traceparent)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusAccepted {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
	b.StopTimer()
	// CPU time of the whole process per request (span export included):
	// steadier than ns/op on a machine other work competes for.
	b.ReportMetric(float64(ingest.CPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkHandlerNoTracing is the per-request CPU of the ingest HTTP path
// without an exporter (the default); it compiles against the code before
// tracing too, for a before/after comparison.
func BenchmarkHandlerNoTracing(b *testing.B) {
	serveOne(b, benchHandler(b, ingest.Config{}), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
}
