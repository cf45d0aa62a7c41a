package webhooker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventline/eventline/internal/consumerlag"
)

// Metrics are the webhooker's Prometheus metrics.
type Metrics struct {
	attempts     *prometheus.CounterVec
	fanout       prometheus.Counter
	firstAttempt prometheus.Histogram
	due          prometheus.Counter
	consumer     *consumerlag.Metrics
	reg          prometheus.Registerer
}

// NewMetrics registers the webhooker metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventline_webhook_attempts_total", Help: "Delivery attempts by outcome class: success, status, timeout, refused, reset, dns, blocked, tls, network, disabled.",
		}, []string{"outcome"}),
		fanout: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventline_webhook_deliveries_created_total", Help: "Deliveries created by fan-out and replay (one per event and endpoint).",
		}),
		firstAttempt: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "eventline_webhook_first_attempt_delay_seconds", Help: "From the event's recorded_at to the start of its first attempt.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		due: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventline_webhook_retries_scheduled_total", Help: "Deliveries taken from Postgres for a retry or after an expired claim.",
		}),
		consumer: consumerlag.NewMetrics(reg),
		reg:      reg,
	}
	reg.MustRegister(m.attempts, m.fanout, m.firstAttempt, m.due)
	return m
}

func (m *Metrics) attempt(outcome string) {
	if m != nil {
		m.attempts.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) created(n int) {
	if m != nil {
		m.fanout.Add(float64(n))
	}
}

func (m *Metrics) firstAttemptDelay(d time.Duration) {
	if m != nil {
		m.firstAttempt.Observe(d.Seconds())
	}
}

func (m *Metrics) scheduled(n int) {
	if m != nil {
		m.due.Add(float64(n))
	}
}

// watchRegistry exports the size of this replica's endpoint registry
// (once per Metrics: a second registry is ignored).
func (m *Metrics) watchRegistry(r *Registry) {
	if m != nil {
		_ = m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "eventline_webhook_endpoints", Help: "Endpoints in this replica's registry, enabled or not.",
		}, func() float64 { return float64(r.Len()) }))
	}
}
