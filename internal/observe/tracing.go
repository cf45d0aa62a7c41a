package observe

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing is a service's OpenTelemetry tracing: a tracer provider and how
// to flush it.
type Tracing struct {
	// Provider creates the service's spans. Without an exporter it is a
	// no-op provider: a span started from an incoming traceparent carries
	// that same context on, so W3C propagation from the producer into NATS
	// headers and webhook deliveries works with tracing off.
	Provider trace.TracerProvider
	// Exporting says whether spans are recorded and exported.
	Exporting bool
	shutdown  func(context.Context) error
}

// StartTracing configures tracing for service from the standard
// OpenTelemetry environment: spans are exported over OTLP/HTTP when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set
// (and OTEL_SDK_DISABLED is not "true"); OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_* and
// OTEL_EXPORTER_OTLP_* (headers, timeout, protocol http/protobuf) apply as
// documented by OpenTelemetry. The default sampler is parentbased_always_on.
func StartTracing(ctx context.Context, service string) (*Tracing, error) {
	off := &Tracing{Provider: noop.NewTracerProvider(), shutdown: func(context.Context) error { return nil }}
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") ||
		(os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "") {
		return off, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter (check OTEL_EXPORTER_OTLP_*): %w", err)
	}
	// Later options win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override the binary's name.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service), attribute.String("service.namespace", "eventline")),
		resource.WithFromEnv(), resource.WithHost(), resource.WithProcessPID())
	if err != nil {
		return nil, fmt.Errorf("trace resource (check OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{Provider: tp, Exporting: true, shutdown: tp.Shutdown}, nil
}

// Shutdown exports the spans still buffered and stops the exporter. Call it
// after the service has drained, so the drain's spans are included.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if err := t.shutdown(ctx); err != nil {
		return fmt.Errorf("flush traces: %w", err)
	}
	return nil
}

// Tracer returns the tracer of an eventline component, or a no-op tracer
// when tp is nil.
func Tracer(tp trace.TracerProvider, component string) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer("github.com/eventline/eventline/" + component)
}

// traceContext is the W3C Trace Context propagator: the only one eventline
// speaks (the traceparent header in HTTP and in NATS messages).
var traceContext propagation.TraceContext

// WithTraceparent returns ctx carrying the remote span context of a W3C
// traceparent (and tracestate); an empty or invalid traceparent leaves ctx
// as it is.
func WithTraceparent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	c := traceparentCarrier(traceparent)
	return traceContext.Extract(ctx, &c)
}

// WithHeaderTrace returns ctx carrying the remote span context of h's
// traceparent and tracestate headers.
func WithHeaderTrace(ctx context.Context, h interface{ Get(string) string }) context.Context {
	if h.Get("traceparent") == "" {
		return ctx
	}
	return traceContext.Extract(ctx, getCarrier{h})
}

// Traceparent is the W3C traceparent of ctx's span, or "" when ctx has no
// valid span context.
func Traceparent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	c := traceparentCarrier("")
	traceContext.Inject(ctx, &c)
	return string(c)
}

// traceparentCarrier carries just a traceparent.
type traceparentCarrier string

func (c *traceparentCarrier) Get(key string) string {
	if key == "traceparent" {
		return string(*c)
	}
	return ""
}

func (c *traceparentCarrier) Set(key, value string) {
	if key == "traceparent" {
		*c = traceparentCarrier(value)
	}
}

func (c *traceparentCarrier) Keys() []string { return []string{"traceparent"} }

type getCarrier struct {
	h interface{ Get(string) string }
}

func (c getCarrier) Get(key string) string { return c.h.Get(key) }
func (getCarrier) Set(string, string)      {}
func (getCarrier) Keys() []string          { return []string{"traceparent", "tracestate"} }
