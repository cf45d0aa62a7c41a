package projector

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Lag is how far the projection is behind the head of the stream.
type Lag struct {
	// Pending is the consumer's num_pending + num_ack_pending.
	Pending uint64
	// Behind is the age of the oldest message not yet acknowledged; 0 when
	// caught up.
	Behind time.Duration
	// At is when it was measured.
	At time.Time
}

// MeasureLag reads the consumer state and the timestamp of the first
// unacknowledged message.
func MeasureLag(ctx context.Context, cons jetstream.Consumer, str jetstream.Stream, now time.Time) (Lag, error) {
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

// lagMonitor measures lag periodically, exports it and answers readiness.
type lagMonitor struct {
	cons    jetstream.Consumer
	str     jetstream.Stream
	every   time.Duration
	maxLag  time.Duration
	metrics *Metrics

	mu   sync.Mutex
	last Lag
	err  error
}

func (m *lagMonitor) run(ctx context.Context) {
	t := time.NewTicker(m.every)
	defer t.Stop()
	for {
		m.measure(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *lagMonitor) measure(ctx context.Context) {
	mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := MeasureLag(mctx, m.cons, m.str, time.Now())
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
	if err == nil {
		m.last = l
		m.metrics.pending.Set(float64(l.Pending))
		m.metrics.lagSeconds.Set(l.Behind.Seconds())
	}
}

// ready fails when the last measurement is older than three periods, failed,
// or shows more lag than allowed.
func (m *lagMonitor) ready(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.err != nil:
		return fmt.Errorf("cannot measure lag: %w", m.err)
	case m.last.At.IsZero() || time.Since(m.last.At) > 3*m.every:
		return fmt.Errorf("lag not measured since %s", m.last.At.Format(time.RFC3339))
	case m.maxLag > 0 && m.last.Behind > m.maxLag:
		return fmt.Errorf("%s behind the stream (%d messages pending), more than the allowed %s", m.last.Behind.Round(time.Millisecond), m.last.Pending, m.maxLag)
	}
	return nil
}
