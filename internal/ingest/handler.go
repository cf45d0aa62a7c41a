package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/internal/observe"
	"github.com/eventline/eventline/pkg/cloudevent"
	"github.com/eventline/eventline/pkg/events"
)

// MaxBody is the largest request body accepted (413 above).
const MaxBody = 1 << 20

// MaxEventsPerRequest is the most events one request may carry.
const MaxEventsPerRequest = events.MaxBatch

// handler serves POST /v1/events (docs/contract.md §2 "Ingest").
type handler struct {
	committer *Committer
	limiter   *limiter
	metrics   *metrics
	log       *slog.Logger
	now       func() time.Time
	tracer    trace.Tracer // nil: no spans; an incoming traceparent is passed on
}

type appendResponse struct {
	Events []events.Result `json:"events"`
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	if h.tracer == nil {
		rec := &statusRecorder{ResponseWriter: w}
		h.serve(rec, r, start)
		h.metrics.request(rec.status, time.Since(start))
		return
	}
	// The request span continues the caller's trace; the events carry its
	// context on into the stream.
	ctx, span := h.tracer.Start(observe.WithHeaderTrace(r.Context(), r.Header), "POST /v1/events",
		trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start))
	rec := &statusRecorder{ResponseWriter: w}
	h.serve(rec, r.WithContext(ctx), start)
	took := time.Since(start)
	h.metrics.request(rec.status, took)
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("http.response.status_code", rec.status))
		if rec.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(rec.status))
		}
	}
	span.End(trace.WithTimestamp(start.Add(took)))
}

func (h *handler) serve(w http.ResponseWriter, r *http.Request, now time.Time) {
	key, _ := httpapi.KeyFrom(r.Context())
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && mt != cloudevent.MediaType && mt != cloudevent.BatchMediaType) {
		if h.overLimit(w, key, 1, now) {
			return
		}
		httpapi.Error(w, http.StatusUnsupportedMediaType, "send the body as JSON with 'Content-Type: application/json' (or CloudEvents: application/cloudevents+json, application/cloudevents-batch+json)")
		return
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, MaxBody), r.ContentLength)
	if err != nil {
		if h.overLimit(w, key, 1, now) {
			return
		}
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpapi.Error(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes (1 MiB); split the events into several requests", MaxBody))
			return
		}
		httpapi.Error(w, http.StatusBadRequest, "could not read the request body: "+err.Error())
		return
	}
	var es []events.Event
	var verrs []events.FieldError
	if mt == "application/json" {
		es, verrs = parseBody(body, key.Tenant, now)
	} else {
		es, verrs = parseCloudEvents(body, mt == cloudevent.BatchMediaType, key.Tenant, now)
	}
	if len(verrs) > 0 {
		h.metrics.rejected(verrs)
		if h.overLimit(w, key, 1, now) {
			return
		}
		httpapi.ValidationFailed(w, "the request has invalid events; nothing was appended. Fix every listed field and send it again", verrs)
		return
	}
	if h.overLimit(w, key, len(es), now) {
		return
	}
	// One span per request keeps tracing cheap on the hot path: its
	// context is the events' traceparent in the stream.
	ctx := r.Context()
	span := trace.SpanFromContext(ctx)
	tp := r.Header.Get("traceparent")
	if h.tracer != nil {
		tp = observe.Traceparent(ctx)
	}
	if events.IsTraceparent(tp) {
		for i := range es {
			es[i].Traceparent = tp
		}
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.String("messaging.destination.name", events.StreamName),
			attribute.Int("messaging.batch.message_count", len(es)), attribute.String("eventline.tenant", key.Tenant))
	}
	results, err := h.committer.Append(ctx, es)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			return // the client went away; its events are still appended
		}
		h.log.WarnContext(r.Context(), "append failed", "tenant", key.Tenant, "events", len(es), "error", err)
		httpapi.Unavailable(w, time.Second, "the event stream cannot take the append right now; nothing is acknowledged. Retry: events with an id are de-duplicated")
		return
	}
	h.metrics.appended(results)
	if body, ok := appendResults(make([]byte, 0, 16+len(results)*72), results); ok {
		httpapi.JSONBytes(w, http.StatusAccepted, body)
		return
	}
	httpapi.JSON(w, http.StatusAccepted, appendResponse{Events: results})
}

// appendResults writes the 202 body, byte for byte what httpapi.JSON writes
// for appendResponse, without reflection (a 100-event request answers 100
// results); false when an id is not plain ASCII that needs no escaping,
// which a validated id always is (TestAppendResultsMatchesJSON).
func appendResults(dst []byte, results []events.Result) ([]byte, bool) {
	if results == nil {
		return dst, false // encoding/json writes null
	}
	dst = append(dst, `{"events":[`...)
	for i, r := range results {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"id":"`...)
		for j := 0; j < len(r.ID); j++ {
			if c := r.ID[j]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
				return dst, false
			}
		}
		dst = append(dst, r.ID...)
		dst = append(dst, `","seq":`...)
		dst = strconv.AppendUint(dst, r.Seq, 10)
		dst = append(dst, `,"duplicate":`...)
		dst = strconv.AppendBool(dst, r.Duplicate)
		dst = append(dst, '}')
	}
	return append(dst, "]}\n"...), true
}

// readBody reads r to the end into one buffer of size+1 bytes when the
// request declares its length (size, at most MaxBody), instead of the
// doubling of io.ReadAll: a 40 KB batch body otherwise costs seven copies.
// The server stops the body at its Content-Length, and r at MaxBody.
func readBody(r io.Reader, size int64) ([]byte, error) {
	if size <= 0 || size > MaxBody {
		return io.ReadAll(r)
	}
	buf := make([]byte, 0, size+1) // +1: room to read the EOF without growing
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
	}
}

// overLimit takes n events from the key's rate limit and, when they do not
// fit, answers 429 and returns true. An invalid request is charged one.
func (h *handler) overLimit(w http.ResponseWriter, key apikey.Key, n int, now time.Time) bool {
	v := h.limiter.take(key.ID, key.RateLimit, n, now)
	if v.ok {
		return false
	}
	p := httpapi.Problem{Type: httpapi.TypeRateLimit, Title: "Rate limit exceeded", Status: http.StatusTooManyRequests}
	if v.tooBig {
		// Retrying the same request can never succeed: no Retry-After.
		p.Detail = fmt.Sprintf("this request has %d events, more than this API key's burst of %d (its limit is %d events/s, and a request counts every event); split it into requests of at most %d events, or ask for a higher limit", n, v.burst, v.burst, v.burst)
	} else {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(v.wait.Seconds()))))
		p.Detail = "this API key is over its rate limit; retry after the Retry-After delay or ask for a higher limit"
	}
	httpapi.WriteProblem(w, p)
	return true
}

// parseCloudEvents reads one structured-mode CloudEvent, or a batch of
// them, into events (docs/cloudevents.md): each becomes the input form of
// an event, validated as any other, with errors named by CloudEvents
// attribute.
func parseCloudEvents(body []byte, batch bool, tenant string, now time.Time) ([]events.Event, []events.FieldError) {
	raws := []json.RawMessage{body}
	if batch {
		if err := json.Unmarshal(body, &raws); err != nil || raws == nil {
			return nil, []events.FieldError{{Field: "body", Message: "must be a JSON array of CloudEvents (application/cloudevents-batch+json)"}}
		}
		if len(raws) == 0 || len(raws) > MaxEventsPerRequest {
			return nil, []events.FieldError{{Field: "body", Message: fmt.Sprintf("has %d CloudEvents; send 1 to %d per request", len(raws), MaxEventsPerRequest)}}
		}
	}
	inputs := make([]json.RawMessage, len(raws))
	var errs []events.FieldError
	for i, raw := range raws {
		in, ferrs := cloudevent.ToInput(raw, i)
		errs = append(errs, ferrs...)
		inputs[i] = in
	}
	if len(errs) > 0 {
		return nil, errs
	}
	var wrapped bytes.Buffer
	enc := json.NewEncoder(&wrapped)
	enc.SetEscapeHTML(false) // particulars pass through as sent
	if err := enc.Encode(map[string][]json.RawMessage{"events": inputs}); err != nil {
		return nil, []events.FieldError{{Field: "body", Message: err.Error()}}
	}
	es, errs := parseBodySlow(wrapped.Bytes(), tenant, now)
	for i := range errs {
		errs[i].Field = cloudevent.Attribute(errs[i].Field)
	}
	return es, errs
}

// parseBody reads one event or {"events": [...]}, decodes every event for
// tenant and normalizes it. It returns every field error of every event.
func parseBody(body []byte, tenant string, now time.Time) ([]events.Event, []events.FieldError) {
	if es, ok := parseFast(body, tenant, now); ok {
		return es, nil
	}
	return parseBodySlow(body, tenant, now)
}

// parseBodySlow is the strict parser: it names every problem of every
// event. parseFast handles the common valid body at half the cost and
// defers to it for anything it cannot vouch for.
func parseBodySlow(body []byte, tenant string, now time.Time) ([]events.Event, []events.FieldError) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, []events.FieldError{{Field: "body", Message: "must be a JSON object: one event, or {\"events\": [ ... ]}"}}
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, []events.FieldError{{Field: "body", Message: "is not valid JSON: " + err.Error()}}
	}
	var raws []json.RawMessage
	if list, ok := probe["events"]; !ok {
		raws = []json.RawMessage{body}
	} else {
		if len(probe) != 1 {
			return nil, []events.FieldError{{Field: "body", Message: "a batch body has only the field \"events\""}}
		}
		if err := json.Unmarshal(list, &raws); err != nil || raws == nil {
			return nil, []events.FieldError{{Field: "events", Message: "must be an array of events"}}
		}
		if len(raws) == 0 || len(raws) > MaxEventsPerRequest {
			return nil, []events.FieldError{{Field: "events", Message: fmt.Sprintf("has %d events; send 1 to %d per request", len(raws), MaxEventsPerRequest)}}
		}
	}
	var errs []events.FieldError
	es := make([]events.Event, len(raws))
	seen := make(map[string]int, len(raws))
	for i, raw := range raws {
		e, err := events.DecodeForTenant(raw, i, tenant, now)
		if err == nil {
			err = e.NormalizeStorable(now) // DecodeForTenant scanned the whole event
		}
		if err != nil {
			var verr *events.ValidationError
			if !errors.As(err, &verr) {
				errs = append(errs, events.FieldError{Index: i, Field: "event", Message: err.Error()})
				continue
			}
			errs = append(errs, verr.Errors...)
			continue
		}
		if first, dup := seen[e.ID]; dup {
			errs = append(errs, events.FieldError{Index: i, Field: "id", Message: fmt.Sprintf("repeats the id of event %d in this request; ids must be unique", first)})
			continue
		}
		seen[e.ID] = i
		es[i] = e
	}
	return es, errs
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}
