package observe_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/observe"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/provision"
	"github.com/eventline/eventline/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// span is one exported span with its service.
type span struct {
	service               string
	name                  string
	traceID, id, parentID string
	kind                  tracepb.Span_SpanKind
	attributes            map[string]string
}

// otlpReceiver is an OTLP/HTTP trace endpoint that keeps what it is sent.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []span
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want protobuf on /v1/traces", http.StatusBadRequest)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		var service string
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				attrs := map[string]string{}
				for _, kv := range s.GetAttributes() {
					attrs[kv.GetKey()] = anyValue(kv.GetValue())
				}
				o.spans = append(o.spans, span{service: service, name: s.GetName(), traceID: hex.EncodeToString(s.GetTraceId()),
					id: hex.EncodeToString(s.GetSpanId()), parentID: hex.EncodeToString(s.GetParentSpanId()), kind: s.GetKind(), attributes: attrs})
			}
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func anyValue(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	}
	return v.String()
}

// find returns the spans named name of service.
func (o *otlpReceiver) find(service, name string) []span {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []span
	for _, s := range o.spans {
		if s.service == service && s.name == name {
			out = append(out, s)
		}
	}
	return out
}

// TestOneTraceFromIngestToDelivery runs the real ingest, projector,
// notifier and webhooker binaries exporting to an OTLP/HTTP receiver: an event posted
// with a traceparent produces ingest, projector and webhooker spans and a
// webhook request whose traceparent all carry that trace id, each span the
// child of the one before it. The consumers export their lag.
func TestOneTraceFromIngestToDelivery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	dbURL := testenv.Database(t)
	pool, err := postgres.Open(ctx, dbURL)
	require.NoError(t, err)
	defer pool.Close()
	_, key, err := apikey.NewStore(pool, 0).Create(ctx, apikey.CreateParams{Tenant: "acme", Scopes: []string{"ingest", "admin"}})
	require.NoError(t, err)

	otlp := &otlpReceiver{}
	collector := httptest.NewServer(otlp)
	defer collector.Close()
	var (
		mu       sync.Mutex
		received []string // traceparent of each delivery
		got      = make(chan struct{}, 1)
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received = append(received, r.Header.Get("traceparent"))
		mu.Unlock()
		select {
		case got <- struct{}{}:
		default:
		}
	}))
	defer receiver.Close()

	_, err = provision.Run(ctx, n.Connect(t), provision.Config{})
	require.NoError(t, err)
	env := func(identity string, more ...string) []string {
		return append(append(n.Env(identity), "DATABASE_URL="+dbURL, "OTEL_EXPORTER_OTLP_ENDPOINT="+collector.URL, "OTEL_BSP_SCHEDULE_DELAY=50"), more...)
	}
	webhooker := testenv.StartService(t, testenv.BuildBinary(t, "./cmd/webhooker"), env(natsauth.Webhooker, "WEBHOOK_ALLOW_PRIVATE=true", "EVENTLINE_SECRET_KEY="+testenv.SecretKey)...)
	ingest := testenv.StartService(t, testenv.BuildBinary(t, "./cmd/ingest"), env(natsauth.Ingest)...)
	projector := testenv.StartService(t, testenv.BuildBinary(t, "./cmd/projector"), env(natsauth.Projector)...)
	notifier := testenv.StartService(t, testenv.BuildBinary(t, "./cmd/notifier"), env(natsauth.Notifier)...)
	projector.WaitReady(t)
	notifier.WaitReady(t)
	webhooker.WaitReady(t)
	ingest.WaitReady(t)

	status, body := post(t, webhooker.URL+"/v1/webhooks", key, "", `{"url": "`+receiver.URL+`/hook", "events": ["card.*"]}`)
	require.Equal(t, http.StatusCreated, status, body)

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	const callerSpan = "00f067aa0ba902b7"
	// The endpoint reaches the fan-out's registry within its refresh
	// interval: send events of the same trace until one is delivered.
sending:
	for i := 0; ; i++ {
		status, body = post(t, ingest.URL+"/v1/events", key, "00-"+traceID+"-"+callerSpan+"-01",
			fmt.Sprintf(`{"id": "e%d", "action": "closed", "eventable": {"type": "card", "id": "c1"}, "creator": {"type": "user", "id": "u1"}}`, i))
		require.Equal(t, http.StatusAccepted, status, body)
		select {
		case <-got:
			break sending
		case <-time.After(500 * time.Millisecond):
		}
		require.Less(t, i, 30, "no webhook delivery within 15s\n%s", webhooker.Output())
	}
	mu.Lock()
	delivered := received[0]
	mu.Unlock()
	parts := strings.Split(delivered, "-")
	require.Len(t, parts, 4, "the delivery carries a traceparent: %q", delivered)
	require.Equal(t, traceID, parts[1], "the delivery continues the caller's trace")
	require.NotEqual(t, callerSpan, parts[2], "the delivery's parent is the webhooker's attempt span, not the caller's span")

	var deliver span
	testenv.Poll(t, 10*time.Second, "the delivery span of the received request", func() bool {
		for _, s := range otlp.find("webhooker", "webhook deliver") {
			if s.id == parts[2] {
				deliver = s
				return true
			}
		}
		return false
	})
	var request, fanout span
	testenv.Poll(t, 10*time.Second, "ingest and fan-out spans of the delivered event", func() bool {
		for _, f := range otlp.find("webhooker", "webhook fanout") {
			if f.traceID != traceID || f.attributes["eventline.event.id"] != deliver.attributes["eventline.event.id"] {
				continue
			}
			for _, r := range otlp.find("ingest", "POST /v1/events") {
				if r.id == f.parentID {
					request, fanout = r, f
					return true
				}
			}
		}
		return false
	})
	for _, s := range []span{request, fanout, deliver} {
		require.Equal(t, traceID, s.traceID, "%s/%s is in the caller's trace", s.service, s.name)
	}
	require.Equal(t, callerSpan, request.parentID, "the ingest request span continues the incoming traceparent")
	require.Equal(t, tracepb.Span_SPAN_KIND_SERVER, request.kind)
	require.Equal(t, "EVENTS", request.attributes["messaging.destination.name"])
	require.Equal(t, tracepb.Span_SPAN_KIND_CONSUMER, fanout.kind)
	require.Equal(t, request.id, deliver.parentID, "each attempt is a child of the event's span from its NATS header")
	require.Equal(t, tracepb.Span_SPAN_KIND_CLIENT, deliver.kind)
	require.Equal(t, "200", deliver.attributes["http.response.status_code"])
	testenv.Poll(t, 10*time.Second, "the projector's span of the delivered event", func() bool {
		for _, s := range otlp.find("projector", "projector project") {
			if s.traceID == traceID && s.parentID == request.id && s.kind == tracepb.Span_SPAN_KIND_CONSUMER {
				return true
			}
		}
		return false
	})

	testenv.Poll(t, 10*time.Second, "the notifier's span of the event", func() bool {
		for _, s := range otlp.find("notifier", "notifier notify") {
			if s.traceID == traceID && s.parentID == request.id && s.kind == tracepb.Span_SPAN_KIND_CONSUMER {
				return true
			}
		}
		return false
	})

	// Every consumer exports its durable's lag under its own name.
	for name, svc := range map[string]*testenv.Service{"projector": projector, "webhooker": webhooker, "notifier": notifier} {
		testenv.Poll(t, 15*time.Second, name+" exports its consumer lag", func() bool {
			resp, err := http.Get(svc.AdminURL + "/metrics")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return strings.Contains(string(b), `eventline_consumer_pending_messages{consumer="`+name+`"}`) &&
				strings.Contains(string(b), `eventline_consumer_lag_seconds{consumer="`+name+`"}`)
		})
	}
}

func post(t *testing.T, url, key, traceparent, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestTraceparentWithoutExporter: with tracing off, an incoming traceparent
// passes through a span unchanged, and no traceparent yields none.
func TestTraceparentWithoutExporter(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tr, err := observe.StartTracing(context.Background(), "test")
	require.NoError(t, err)
	require.False(t, tr.Exporting)
	tracer := observe.Tracer(tr.Provider, "test")

	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx, sp := tracer.Start(observe.WithTraceparent(context.Background(), tp), "x")
	sp.End()
	require.Equal(t, tp, observe.Traceparent(ctx))

	ctx, sp = tracer.Start(context.Background(), "x")
	sp.End()
	require.Empty(t, observe.Traceparent(ctx))
	require.Empty(t, observe.Traceparent(observe.WithTraceparent(context.Background(), "00-nonsense")))
	require.NoError(t, tr.Shutdown(context.Background()))
}
