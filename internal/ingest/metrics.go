package ingest

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventline/eventline/pkg/events"
)

// metrics are the ingest service's Prometheus metrics.
type metrics struct {
	requests      *prometheus.CounterVec
	duration      prometheus.Histogram
	eventsTotal   *prometheus.CounterVec
	batchSize     prometheus.Histogram
	batchDuration prometheus.Histogram
	batchErrors   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventline_ingest_requests_total", Help: "HTTP append requests by status code.",
		}, []string{"code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "eventline_ingest_request_duration_seconds", Help: "Time from request to response, including the durable append.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		eventsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventline_ingest_events_total", Help: "Events by outcome: appended, duplicate (already stored), rejected (invalid).",
		}, []string{"outcome"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "eventline_ingest_batch_size_events", Help: "Events per group-commit batch.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000},
		}),
		batchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "eventline_ingest_batch_duration_seconds", Help: "Time to append one batch durably (publish to PubAck).",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
		batchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventline_ingest_batch_errors_total", Help: "Batches that could not be appended (answered 503).",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.eventsTotal, m.batchSize, m.batchDuration, m.batchErrors)
	return m
}

func (m *metrics) request(code int, took time.Duration) {
	m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	m.duration.Observe(took.Seconds())
}

// rejected counts the events that had at least one error.
func (m *metrics) rejected(errs []events.FieldError) {
	bad := map[int]bool{}
	for _, fe := range errs {
		bad[fe.Index] = true
	}
	m.eventsTotal.WithLabelValues("rejected").Add(float64(len(bad)))
}

func (m *metrics) appended(results []events.Result) {
	var dup int
	for _, r := range results {
		if r.Duplicate {
			dup++
		}
	}
	m.eventsTotal.WithLabelValues("appended").Add(float64(len(results) - dup))
	if dup > 0 {
		m.eventsTotal.WithLabelValues("duplicate").Add(float64(dup))
	}
}

func (m *metrics) batch(n int, took time.Duration, err error) {
	if err != nil {
		m.batchErrors.Inc()
		return
	}
	m.batchSize.Observe(float64(n))
	m.batchDuration.Observe(took.Seconds())
}
