// Package consumerlag measures how far a durable JetStream consumer is
// behind the EVENTS stream, in messages and in seconds, exports it as
// Prometheus gauges labelled by consumer, and answers readiness. Every
// consumer service (projector, notifier, webhooker) runs one Monitor on its
// durable; KEDA scales on the same num_pending + num_ack_pending.
package consumerlag

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Lag is how far a consumer is behind the head of the stream.
type Lag struct {
	// Pending is the consumer's num_pending + num_ack_pending.
	Pending uint64
	// Behind is the age of the oldest message not yet acknowledged; 0 when
	// caught up.
	Behind time.Duration
	// At is when it was measured.
	At time.Time
}

// Measure reads the consumer state and the timestamp of the first
// unacknowledged message.
func Measure(ctx context.Context, cons jetstream.Consumer, str jetstream.Stream, now time.Time) (Lag, error) {
	info, err := cons.Info(ctx)
	if err != nil {
		return Lag{}, fmt.Errorf("consumer info: %w", err)
	}
	l := Lag{Pending: info.NumPending + uint64(info.NumAckPending), At: now}
	if l.Pending == 0 {
		return l, nil
	}
	// The oldest message not yet acked is the first after the ack floor
	// (it may have been removed by limits: then the next one that exists).
	m, err := str.GetMsg(ctx, info.AckFloor.Stream+1)
	if err != nil {
		sinfo, serr := str.Info(ctx)
		if serr != nil {
			return Lag{}, fmt.Errorf("stream info: %w", serr)
		}
		if m, err = str.GetMsg(ctx, max(info.AckFloor.Stream+1, sinfo.State.FirstSeq)); err != nil {
			return Lag{}, fmt.Errorf("read oldest pending message: %w", err)
		}
	}
	l.Behind = max(0, now.Sub(m.Time))
	return l, nil
}

// Metrics are the lag gauges, labelled by durable consumer name.
type Metrics struct {
	pending *prometheus.GaugeVec
	behind  *prometheus.GaugeVec
}

// NewMetrics registers eventline_consumer_pending_messages and
// eventline_consumer_lag_seconds on reg, or reuses them when another
// service in the same process registered them already (`eventline dev`).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{
		pending: registerOnce(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eventline_consumer_pending_messages",
			Help: "Messages the durable consumer has not finished: num_pending + num_ack_pending (what KEDA scales on).",
		}, []string{"consumer"})),
		behind: registerOnce(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eventline_consumer_lag_seconds",
			Help: "Age of the oldest message the durable consumer has not acknowledged (0 when caught up).",
		}, []string{"consumer"})),
	}
}

func registerOnce(reg prometheus.Registerer, g *prometheus.GaugeVec) *prometheus.GaugeVec {
	if err := reg.Register(g); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.GaugeVec); ok {
				return existing
			}
		}
		panic(err)
	}
	return g
}

// Config tunes a Monitor.
type Config struct {
	// Consumer is the durable's name, the metrics' consumer label.
	Consumer string
	// Every is how often lag is measured; default 5s.
	Every time.Duration
	// MaxLag makes Ready fail when the oldest unacknowledged message is
	// older; 0 disables that condition.
	MaxLag time.Duration
	// OnMeasure, when set, also receives every successful measurement (a
	// service's own gauges).
	OnMeasure func(Lag)
}

// Monitor measures one consumer's lag periodically, exports it and answers
// readiness. It is safe for concurrent use.
type Monitor struct {
	cons    jetstream.Consumer
	str     jetstream.Stream
	cfg     Config
	pending prometheus.Gauge
	behind  prometheus.Gauge

	mu   sync.Mutex
	last Lag
	err  error
}

// NewMonitor returns a Monitor of cons on str exporting into m.
func NewMonitor(cons jetstream.Consumer, str jetstream.Stream, m *Metrics, cfg Config) *Monitor {
	if cfg.Every <= 0 {
		cfg.Every = 5 * time.Second
	}
	return &Monitor{cons: cons, str: str, cfg: cfg,
		pending: m.pending.WithLabelValues(cfg.Consumer), behind: m.behind.WithLabelValues(cfg.Consumer)}
}

// Run measures until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Every)
	defer t.Stop()
	for {
		m.Measure(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Measure takes one measurement now and exports it.
func (m *Monitor) Measure(ctx context.Context) {
	mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := Measure(mctx, m.cons, m.str, time.Now())
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
	if err == nil {
		m.last = l
		m.pending.Set(float64(l.Pending))
		m.behind.Set(l.Behind.Seconds())
		if m.cfg.OnMeasure != nil {
			m.cfg.OnMeasure(l)
		}
	}
}

// Last is the last successful measurement.
func (m *Monitor) Last() Lag {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}

// Ready fails when the last measurement failed, is older than three
// periods, or shows more lag than allowed. It is an observe.Check.
func (m *Monitor) Ready(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.err != nil:
		return fmt.Errorf("cannot measure lag: %w", m.err)
	case m.last.At.IsZero() || time.Since(m.last.At) > 3*m.cfg.Every:
		return fmt.Errorf("lag not measured since %s", m.last.At.Format(time.RFC3339))
	case m.cfg.MaxLag > 0 && m.last.Behind > m.cfg.MaxLag:
		return fmt.Errorf("%s behind the stream (%d messages pending), more than the allowed %s", m.last.Behind.Round(time.Millisecond), m.last.Pending, m.cfg.MaxLag)
	}
	return nil
}

// Pending is the pending-messages gauge of consumer.
func (m *Metrics) Pending(consumer string) prometheus.Gauge {
	return m.pending.WithLabelValues(consumer)
}

// Behind is the lag-seconds gauge of consumer.
func (m *Metrics) Behind(consumer string) prometheus.Gauge { return m.behind.WithLabelValues(consumer) }
