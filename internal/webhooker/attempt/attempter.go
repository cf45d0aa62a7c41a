package attempt

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/eventline/eventline/internal/observe"
	"github.com/eventline/eventline/internal/render"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
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

// Attempter makes one attempt of a job and reports its outcome to Sink.
type Attempter struct {
	Endpoints Endpoints
	Poster    Poster
	Sink      Sink // the fan-out waiting for it (package webhooker), or the log
	Now       func() time.Time
	Rand      func() float64
	UserAgent string
	Log       *slog.Logger
	Observer  Observer
	Tracer    trace.Tracer // nil: no spans
	Sentences Sentences    // the tenants' sentence templates, for Slack messages
}

// Endpoints finds the current copy of an endpoint (endpoint.Registry).
type Endpoints interface {
	Get(id string) (endpoint.Endpoint, bool)
}

// Sink is where the attempter reports every outcome, once per attempt.
// Report is called from every attempt goroutine at once.
type Sink interface {
	Report(o delivery.Outcome)
}

// Sentences are the tenants' sentence templates (render.Store).
type Sentences interface {
	For(ctx context.Context, tenant string) (render.Set, error)
}

// Observer hears how attempts go, as they go (package webhooker's
// attemptMeter: metrics, and the endpoint speeds the fan-out's
// attempt-first reads). Its methods are called from every attempt
// goroutine at once, and must not block.
type Observer interface {
	// FirstAttempt: a delivery's first attempt is sent delay after its
	// event was recorded.
	FirstAttempt(delay time.Duration)
	// Answered: the endpoint answered, or the request failed, took after
	// the attempt started.
	Answered(endpointID string, took time.Duration)
	// Attempted: an attempt that reached the endpoint ended as outcome:
	// "success", or its error class.
	Attempted(outcome string)
}

// The Standard Webhooks headers' keys in canonical form.
var (
	headerID        = http.CanonicalHeaderKey(webhook.HeaderID)
	headerTimestamp = http.CanonicalHeaderKey(webhook.HeaderTimestamp)
	headerSignature = http.CanonicalHeaderKey(webhook.HeaderSignature)
)

// MaxLoggedResponse is how many bytes of an answer's body the delivery
// log keeps.
const MaxLoggedResponse = 1024

func (a *Attempter) Attempt(ctx context.Context, j delivery.Job) {
	ep, ok := a.Endpoints.Get(j.EndpointID)
	start := a.Now()
	o := delivery.Outcome{Job: j, Attempt: delivery.Attempt{N: j.Attempt, At: start}}
	if !ok || !ep.Enabled {
		// Deleted or disabled since the delivery was created: it fails
		// without a request and stays retryable by hand.
		o.Attempt.ErrorClass, o.Attempt.Error = "disabled", "the endpoint is disabled or deleted"
		o.FinishedAt = start
		a.Sink.Report(o)
		return
	}
	body, err := a.body(ctx, ep, j)
	if err != nil {
		o.Attempt.ErrorClass, o.Attempt.Error = "encode", err.Error()
		o.FinishedAt = start
		a.Sink.Report(o)
		return
	}
	sig, err := webhook.SignAll(ep.ActiveSecrets(start), j.Event.ID, start, body)
	if err != nil {
		o.Attempt.ErrorClass, o.Attempt.Error = "encode", "sign: "+err.Error()
		o.FinishedAt = start
		a.Sink.Report(o)
		return
	}
	contentType := "application/json"
	if ep.Format == "cloudevents" {
		contentType = cloudevent.MediaType
	}
	// Keys in canonical form, as Header.Set would make them, built in one
	// map literal: an attempt's headers are made for every delivery.
	header := http.Header{"Content-Type": {contentType}, "User-Agent": {a.UserAgent}, headerID: {j.Event.ID},
		headerTimestamp: {strconv.FormatInt(start.Unix(), 10)}, headerSignature: {sig}}
	if j.Attempt == 1 {
		a.Observer.FirstAttempt(time.Since(j.Event.RecordedAt))
	}
	ctx, span := a.startSpan(ctx, j, ep)
	defer span.End()
	if tp := observe.Traceparent(ctx); tp != "" {
		header.Set("traceparent", tp) // the receiver's work joins the event's trace
	}
	resp, err := a.Poster.Post(ctx, ep.URL, header, body)
	end := a.Now()
	a.Observer.Answered(ep.ID, end.Sub(start))
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
		if err != nil || resp.StatusCode < 200 || resp.StatusCode >= 300 {
			span.SetStatus(codes.Error, a.Poster.ErrorClass(err, resp.StatusCode))
		}
	}
	o.FinishedAt = end
	o.Attempt.DurationMS = int(end.Sub(start) / time.Millisecond)
	o.Attempt.StatusCode = resp.StatusCode
	o.Attempt.Response = truncateUTF8(resp.Body, MaxLoggedResponse)
	if err == nil && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		o.Succeeded = true
		a.Observer.Attempted("success")
		a.Sink.Report(o)
		return
	}
	class := a.Poster.ErrorClass(err, resp.StatusCode)
	o.Attempt.ErrorClass = class
	// The log is shown to tenants: say what happened in our words, never
	// the raw error (it can name internal resolvers and addresses).
	o.Attempt.Error = classMessage(class, resp.StatusCode)
	a.Observer.Attempted(class)
	if resp.StatusCode == http.StatusGone {
		o.Gone = true
		a.Sink.Report(o)
		return
	}
	var retryAfter time.Duration
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		retryAfter = delivery.ParseRetryAfter(resp.Header, end)
	}
	o.RetryIn, o.Retry = delivery.NextAttempt(ep.Schedule(), j.Attempt, retryAfter, a.Rand)
	a.Sink.Report(o)
}

// startSpan starts the attempt's client span as a child of the event's
// trace (its traceparent from the stream).
func (a *Attempter) startSpan(ctx context.Context, j delivery.Job, ep endpoint.Endpoint) (context.Context, trace.Span) {
	if a.Tracer == nil {
		return observe.WithTraceparent(ctx, j.Event.Traceparent), noop.Span{}
	}
	ctx, span := a.Tracer.Start(observe.WithTraceparent(ctx, j.Event.Traceparent), "webhook deliver", trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("http.request.method", http.MethodPost), attribute.String("eventline.event.id", j.Event.ID),
			attribute.String("eventline.webhook.endpoint_id", ep.ID), attribute.Int("eventline.webhook.attempt", j.Attempt))
	}
	return ctx, span
}

// body is the delivery payload: the event JSON with seq and type, a
// Slack message, or a CloudEvent (docs/cloudevents.md).
func (a *Attempter) body(ctx context.Context, ep endpoint.Endpoint, j delivery.Job) ([]byte, error) {
	switch {
	case ep.Format == "slack":
		set, err := a.Sentences.For(ctx, j.Event.Tenant)
		if err != nil {
			a.Log.WarnContext(ctx, "cannot read the tenant's sentence templates; the built-in sentence is sent", "error", err)
		}
		return slackBody(set, j.Event)
	case ep.Format == "cloudevents":
		return cloudevent.Marshal(j.Event)
	case j.Body != nil:
		return j.Body, nil
	}
	return j.Event.MarshalJSON()
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
