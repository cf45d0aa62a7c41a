package ingest_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/eventline/eventline/internal/ingest"
)

// BenchmarkHandlerTracing is the per-request CPU of the ingest HTTP path
// with spans exported over OTLP/HTTP to a local collector (encoding and
// sending included, as they run on the same cores), against
// BenchmarkHandlerNoTracing.
func BenchmarkHandlerTracing(b *testing.B) {
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	for _, c := range []struct {
		name        string
		sampler     sdktrace.Sampler
		traceparent string
	}{
		{"always/root", sdktrace.ParentBased(sdktrace.AlwaysSample()), ""},
		{"always/with-traceparent", sdktrace.ParentBased(sdktrace.AlwaysSample()), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"ratio0.1/root", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1)), ""},
	} {
		b.Run(c.name, func(b *testing.B) {
			exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(collector.URL))
			if err != nil {
				b.Fatal(err)
			}
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(c.sampler))
			defer func() { _ = tp.Shutdown(context.Background()) }()
			serveOne(b, benchHandler(b, ingest.Config{TracerProvider: tp}), c.traceparent)
		})
	}
}
