package webhooker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventline/eventline/internal/consumerlag"
	"github.com/eventline/eventline/internal/webhooker/attempt"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
)

// Metrics are the webhooker's Prometheus metrics.
type Metrics struct {
	attempts     *prometheus.CounterVec
	fanout       prometheus.Counter
	firstAttempt prometheus.Histogram
	due          prometheus.Counter
	consumer     *consumerlag.Metrics
	reg          prometheus.Registerer
	dueNow       prometheus.Gauge
	oldestDue    prometheus.Gauge
	claims       *prometheus.CounterVec
	logged       prometheus.Counter
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
		dueNow: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventline_webhook_due_deliveries", Help: "Deliveries due and claimed by no replica (webhook.due, and the endpoints of the chunks of shared fan-outs in webhook.chunks), from Postgres: the same on every replica.",
		}),
		oldestDue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventline_webhook_oldest_due_seconds", Help: "How long the oldest delivery due and claimed by no replica has waited, from Postgres; 0 when none.",
		}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventline_webhook_claims_ended_total",
			Help: "Deliveries whose claim ended under a live replica: lapsed (this replica let them go unattempted, its renewals had failed or come late), taken_over (this replica claimed them after another replica's claim ended: it died or could not renew).",
		}, []string{"how"}),
		logged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventline_webhook_outcomes_logged_total",
			Help: "Attempt outcomes committed to the delivery log; eventline_webhook_attempts_total minus this is what attempts made are still waiting to be written.",
		}),
	}
	reg.MustRegister(m.attempts, m.fanout, m.firstAttempt, m.due, m.dueNow, m.oldestDue, m.claims, m.logged)
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

// outcomesLogged counts outcomes whose log committed.
func (m *Metrics) outcomesLogged(n int) {
	if m != nil && n > 0 {
		m.logged.Add(float64(n))
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
func (m *Metrics) watchRegistry(r *endpoint.Registry) {
	if m != nil {
		_ = m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "eventline_webhook_endpoints", Help: "Endpoints in this replica's registry, enabled or not.",
		}, func() float64 { return float64(r.Len()) }))
	}
}

// watchDispatcher exports what this replica holds: deliveries claimed and
// waiting in its dispatcher, how long the oldest has waited, and its limit
// on attempts in flight (once per Metrics).
func (m *Metrics) watchDispatcher(d *attempt.Dispatcher) {
	if m == nil {
		return
	}
	_ = m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "eventline_webhook_queued_deliveries", Help: "Deliveries this replica claimed that wait for an attempt slot (not running yet).",
	}, func() float64 { q, _, _ := d.Backlog(time.Now()); return float64(q) }))
	_ = m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "eventline_webhook_oldest_queued_seconds", Help: "How long the oldest delivery waiting in this replica's dispatcher has waited; 0 when none.",
	}, func() float64 { _, _, age := d.Backlog(time.Now()); return age.Seconds() }))
	_ = m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "eventline_webhook_attempt_limit", Help: "Attempts this replica lets start at once now: it climbs while more in flight deliver more per second, up to WEBHOOK_WORKERS.",
	}, func() float64 { return float64(d.Limit()) }))
}

// claimsEnded counts deliveries whose claim ended under a live replica
// (how: lapsed, taken_over).
func (m *Metrics) claimsEnded(how string, n int) {
	if m != nil && n > 0 {
		m.claims.WithLabelValues(how).Add(float64(n))
	}
}

func (m *Metrics) backlog(due int64, oldest time.Duration) {
	if m != nil {
		m.dueNow.Set(float64(due))
		m.oldestDue.Set(oldest.Seconds())
	}
}
