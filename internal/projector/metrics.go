package projector

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventline/eventline/internal/consumerlag"
	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/pkg/events"
)

// MaxRejectedTenants bounds the tenant label of
// eventline_rejected_events_total: the first tenants a process sees
// rejected get their own series, later ones are counted as "_other". A
// tenant token on a subject is whatever NATS let a producer publish on; with
// per-tenant credentials that is the installation's tenants, but an open
// server lets anyone invent tenants, and each would be a series forever.
const MaxRejectedTenants = 1000

// Tenant label values that are not tenants (a tenant never starts with '_').
const (
	rejectedNoTenant    = "_none"  // the subject has no valid tenant token
	rejectedOtherTenant = "_other" // beyond MaxRejectedTenants
)

// Metrics are the projector's Prometheus metrics.
type Metrics struct {
	eventsTotal   *prometheus.CounterVec
	batchSize     prometheus.Histogram
	batchDuration prometheus.Histogram
	lagSeconds    prometheus.Gauge
	consumer      *consumerlag.Metrics
	rejected      *prometheus.CounterVec

	mu      sync.Mutex
	tenants map[string]bool // tenants with a series of rejected
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
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventline_rejected_events_total",
			Help: "Messages on events.<tenant>.> that failed validation (GET /v1/rejected-events), each counted once, by tenant " +
				"(_none: the subject names none; _other: beyond the first 1000 tenants) and reason (the top-level field of the first error).",
		}, []string{"tenant", "reason"}),
		tenants: map[string]bool{},
	}
	reg.MustRegister(m.eventsTotal, m.batchSize, m.batchDuration, m.lagSeconds, m.rejected)
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

// rejection counts one rejected message of tenant ("" when its subject
// names none) with these field errors.
func (m *Metrics) rejection(tenant string, errs []events.FieldError) {
	if m == nil {
		return
	}
	m.rejected.WithLabelValues(m.tenantLabel(tenant), deadletter.Reason(errs)).Inc()
}

func (m *Metrics) tenantLabel(tenant string) string {
	if tenant == "" {
		return rejectedNoTenant
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.tenants[tenant] {
		if len(m.tenants) >= MaxRejectedTenants {
			return rejectedOtherTenant
		}
		m.tenants[tenant] = true
	}
	return tenant
}
