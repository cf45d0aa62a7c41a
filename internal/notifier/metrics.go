package notifier

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventline/eventline/internal/consumerlag"
)

// Metrics are the notifier's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	events        *prometheus.CounterVec
	notifications prometheus.Counter
	digests       *prometheus.CounterVec
	subs          prometheus.Gauge
	consumer      *consumerlag.Metrics
}

// NewMetrics registers the notifier metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventline_notifier_events_total", Help: "Events processed by outcome: applied, duplicate (a redelivery that changed nothing), dead_lettered.",
		}, []string{"outcome"}),
		notifications: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventline_notifier_notifications_written_total", Help: "Inbox rows created or bumped (one per user and group per commit).",
		}),
		digests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventline_notifier_digests_total", Help: "Digest outcomes: sent, skipped (nothing unread or unsubscribed), failed (retried later), claim_lost, record_failed.",
		}, []string{"outcome"}),
		subs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventline_notifier_sse_subscribers", Help: "Open Server-Sent Events streams in this process.",
		}),
	}
	reg.MustRegister(m.events, m.notifications, m.digests, m.subs)
	m.consumer = consumerlag.NewMetrics(reg)
	return m
}

func (m *Metrics) event(outcome string, n int) {
	if m != nil && n > 0 {
		m.events.WithLabelValues(outcome).Add(float64(n))
	}
}

func (m *Metrics) applied(r applyResult) {
	if m == nil {
		return
	}
	m.event("applied", r.applied)
	m.event("duplicate", r.duplicates)
	m.notifications.Add(float64(r.notifications))
}

func (m *Metrics) digest(outcome string) {
	if m != nil {
		m.digests.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) subscribers(delta float64) {
	if m != nil {
		m.subs.Add(delta)
	}
}
