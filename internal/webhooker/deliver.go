package webhooker

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/eventline/eventline/internal/observe"
	"github.com/eventline/eventline/internal/render"
	"github.com/eventline/eventline/pkg/cloudevent"
	"github.com/eventline/eventline/pkg/webhook"
)

// Response is what one HTTP attempt got back.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte // at most the client's response limit
}

// Poster sends one delivery: a POST with body and header to url, reading
// at most a bounded part of the response. It classifies failures: see
// ErrorClassOf.
type Poster interface {
	Post(ctx context.Context, url string, header http.Header, body []byte) (Response, error)
	// ErrorClass names a failed attempt: dns, blocked, timeout, refused,
	// tls, reset, network, or status (a non-2xx answer).
	ErrorClass(err error, statusCode int) string
}

// attempter makes one attempt of a job and reports its outcome.
type attempter struct {
	registry  *Registry
	poster    Poster
	report    func(outcome) // firstSink.report: to the fan-out waiting for it, or to the log
	now       func() time.Time
	rnd       func() float64
	userAgent string
	log       *slog.Logger
	observer  attemptObserver
	tracer    trace.Tracer  // nil: no spans
	sentences *render.Store // the tenants' sentence templates, for Slack messages
}

// attemptObserver hears how attempts go, as they go (the Service's
// attemptMeter: metrics, and the endpoint speeds the fan-out's
// attempt-first reads). Its methods are called from every attempt
// goroutine at once, and must not block.
type attemptObserver interface {
	// firstAttempt: a delivery's first attempt is sent delay after its
	// event was recorded.
	firstAttempt(delay time.Duration)
	// answered: the endpoint answered, or the request failed, took after
	// the attempt started.
	answered(endpointID string, took time.Duration)
	// attempted: an attempt that reached the endpoint ended as outcome:
	// "success", or its error class.
	attempted(outcome string)
}

const maxLoggedResponse = 1024

func (a *attempter) attempt(ctx context.Context, j job) {
	ep, ok := a.registry.Get(j.endpointID)
	start := a.now()
	o := outcome{job: j, attempt: Attempt{N: j.attempt, At: start}}
	if !ok || !ep.Enabled {
		// Deleted or disabled since the delivery was created: it fails
		// without a request and stays retryable by hand.
		o.attempt.ErrorClass, o.attempt.Error = "disabled", "the endpoint is disabled or deleted"
		o.finishedAt = start
		a.report(o)
		return
	}
	body, err := a.body(ctx, ep, j)
	if err != nil {
		o.attempt.ErrorClass, o.attempt.Error = "encode", err.Error()
		o.finishedAt = start
		a.report(o)
		return
	}
	header := http.Header{}
	header.Set("Content-Type", "application/json")
	if ep.Format == "cloudevents" {
		header.Set("Content-Type", cloudevent.MediaType)
	}
	header.Set("User-Agent", a.userAgent)
	header.Set(webhook.HeaderID, j.event.ID)
	header.Set(webhook.HeaderTimestamp, fmt.Sprint(start.Unix()))
	sig, err := webhook.SignAll(ep.activeSecrets(start), j.event.ID, start, body)
	if err != nil {
		o.attempt.ErrorClass, o.attempt.Error = "encode", "sign: "+err.Error()
		o.finishedAt = start
		a.report(o)
		return
	}
	header.Set(webhook.HeaderSignature, sig)
	if j.attempt == 1 {
		a.observer.firstAttempt(time.Since(j.event.RecordedAt))
	}
	ctx, span := a.startSpan(ctx, j, ep)
	defer span.End()
	if tp := observe.Traceparent(ctx); tp != "" {
		header.Set("traceparent", tp) // the receiver's work joins the event's trace
	}
	resp, err := a.poster.Post(ctx, ep.URL, header, body)
	end := a.now()
	a.observer.answered(ep.ID, end.Sub(start))
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
		if err != nil || resp.StatusCode < 200 || resp.StatusCode >= 300 {
			span.SetStatus(codes.Error, a.poster.ErrorClass(err, resp.StatusCode))
		}
	}
	o.finishedAt = end
	o.attempt.DurationMS = int(end.Sub(start) / time.Millisecond)
	o.attempt.StatusCode = resp.StatusCode
	o.attempt.Response = truncateUTF8(resp.Body, maxLoggedResponse)
	if err == nil && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		o.succeeded = true
		a.observer.attempted("success")
		a.report(o)
		return
	}
	class := a.poster.ErrorClass(err, resp.StatusCode)
	o.attempt.ErrorClass = class
	// The log is shown to tenants: say what happened in our words, never
	// the raw error (it can name internal resolvers and addresses).
	o.attempt.Error = classMessage(class, resp.StatusCode)
	a.observer.attempted(class)
	if resp.StatusCode == http.StatusGone {
		o.gone = true
		a.report(o)
		return
	}
	var retryAfter time.Duration
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		retryAfter = parseRetryAfter(resp.Header, end)
	}
	o.retryIn, o.retry = nextAttempt(ep.schedule(), j.attempt, retryAfter, a.rnd)
	a.report(o)
}

// startSpan starts the attempt's client span as a child of the event's
// trace (its traceparent from the stream).
func (a *attempter) startSpan(ctx context.Context, j job, ep Endpoint) (context.Context, trace.Span) {
	if a.tracer == nil {
		return observe.WithTraceparent(ctx, j.event.Traceparent), noop.Span{}
	}
	ctx, span := a.tracer.Start(observe.WithTraceparent(ctx, j.event.Traceparent), "webhook deliver", trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("http.request.method", http.MethodPost), attribute.String("eventline.event.id", j.event.ID),
			attribute.String("eventline.webhook.endpoint_id", ep.ID), attribute.Int("eventline.webhook.attempt", j.attempt))
	}
	return ctx, span
}

// body is the delivery payload: the event JSON with seq and type, a
// Slack message, or a CloudEvent (docs/cloudevents.md).
func (a *attempter) body(ctx context.Context, ep Endpoint, j job) ([]byte, error) {
	switch {
	case ep.Format == "slack":
		set, err := a.sentences.For(ctx, j.event.Tenant)
		if err != nil {
			a.log.WarnContext(ctx, "cannot read the tenant's sentence templates; the built-in sentence is sent", "error", err)
		}
		return slackBody(set, j.event)
	case ep.Format == "cloudevents":
		return cloudevent.Marshal(j.event)
	case j.body != nil:
		return j.body, nil
	}
	return j.event.MarshalJSON()
}

// truncateUTF8 is at most the first n bytes of b, cut at a character
// boundary, as text Postgres can store: NUL and invalid UTF-8 become
// U+FFFD.
func truncateUTF8(b []byte, n int) string {
	if len(b) > n {
		for n > 0 && !utf8.RuneStart(b[n]) {
			n--
		}
		b = b[:n]
	}
	// Postgres text holds neither NUL nor invalid UTF-8: such a body
	// refused the whole statement that logs it, with every outcome and
	// delivery recorded alongside.
	return strings.ToValidUTF8(strings.ReplaceAll(string(b), "\x00", "\uFFFD"), "\uFFFD")
}

// classMessage explains an error class to the endpoint's owner.
func classMessage(class string, status int) string {
	switch class {
	case "status":
		return fmt.Sprintf("answered %d; only a 2xx answer is a success (redirects are not followed)", status)
	case "timeout":
		return "no complete answer within the timeout"
	case "refused":
		return "the connection was refused: nothing listens on that address and port"
	case "reset":
		return "the connection was reset or closed before an answer"
	case "dns":
		return "the host name could not be resolved"
	case "blocked":
		return "the host resolves to a private, loopback or otherwise non-public address, which webhooks may not reach"
	case "tls":
		return "the TLS handshake failed (certificate or protocol)"
	default:
		return "the request failed on the network"
	}
}
