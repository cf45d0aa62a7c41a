package projector

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventline/eventline/internal/consumerlag"
)

// Metrics are the projector's Prometheus metrics.
type Metrics struct {
	eventsTotal   *prometheus.CounterVec
	batchSize     prometheus.Histogram
	batchDuration prometheus.Histogram
	lagSeconds    prometheus.Gauge
	consumer      *consumerlag.Metrics
}

// NewMetrics registers the projector metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		eventsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventline_projector_events_total", Help: "Messages by outcome: projected, duplicate (already in the timeline), dead_lettered.",
		}, []string{"outcome"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "eventline_projector_batch_size_messages", Help: "Messages per projection transaction.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000},
		}),
		batchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "eventline_projector_batch_duration_seconds", Help: "Time to write and commit one batch.",
			Buckets: []float64{.001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
		lagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventline_projector_lag_seconds", Help: "Projection lag: age of the oldest event not yet projected (0 when caught up).",
		}),
		consumer: consumerlag.NewMetrics(reg),
	}
	reg.MustRegister(m.eventsTotal, m.batchSize, m.batchDuration, m.lagSeconds)
	return m
}

func (m *Metrics) batch(r batchResult, took time.Duration) {
	if m == nil {
		return
	}
	m.eventsTotal.WithLabelValues("projected").Add(float64(r.projected))
	m.eventsTotal.WithLabelValues("duplicate").Add(float64(r.duplicates))
	m.eventsTotal.WithLabelValues("dead_lettered").Add(float64(r.deadLettered))
	m.batchSize.Observe(float64(r.projected + r.duplicates + r.deadLettered))
	m.batchDuration.Observe(took.Seconds())
}
