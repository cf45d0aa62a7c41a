package webhooker

import (
	"context"
	"log/slog"
	"time"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/webhooker/delivery"
)

// resultWriter logs outcomes in batches through the ledger: one
// transaction per few milliseconds of outcomes, not one per attempt. It
// acts on what a committed batch announces (announce), and lets the
// batch's deliveries go (leases) once written or given up on.
type resultWriter struct {
	ledger    *delivery.Ledger
	in        chan delivery.Outcome
	log       *slog.Logger
	onDisable func(ctx context.Context, tenant, endpointID, reason string)
	leases    *leases // let go once written (or given up on)
	done      chan struct{}
	// notify queues the operational events of committed outcomes
	// (docs/webhooks.md "Operational events"); nil: none.
	notify  func(delivery.Notice)
	metrics *Metrics // nil: none
}

func newResultWriter(l *delivery.Ledger, held *leases, log *slog.Logger, onDisable func(context.Context, string, string, string)) *resultWriter {
	return &resultWriter{ledger: l, in: make(chan delivery.Outcome, 8192), log: log, onDisable: onDisable, leases: held, done: make(chan struct{})}
}

// outcomeLinger is how long a small batch of outcomes waits for more.
const outcomeLinger = 2 * time.Millisecond

// run writes batches until in is closed and drained.
func (w *resultWriter) run() {
	defer close(w.done)
	batch := make([]delivery.Outcome, 0, 1000)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for o := range w.in {
		batch = append(batch[:0], o)
		// Take what is queued; while outcomes keep coming, wait up to
		// outcomeLinger for more: each transaction has a fixed cost (a
		// commit, the endpoint statement), and an outcome written a few
		// milliseconds later delays nothing but the log.
		linger.Reset(outcomeLinger)
	fill:
		for len(batch) < cap(batch) {
			select {
			case o, ok := <-w.in:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				if len(batch) >= cap(batch)/4 {
					break fill
				}
				select {
				case o, ok := <-w.in:
					if !ok {
						break fill
					}
					batch = append(batch, o)
				case <-linger.C:
					break fill
				}
			}
		}
		linger.Stop()
		for attempt := 0; ; {
			err := w.write(context.Background(), batch)
			if err == nil {
				break
			}
			w.log.Error("write delivery outcomes", "outcomes", len(batch), "error", err)
			// A transaction that lost to a concurrent one (a deadlock) is
			// written again however often it takes: giving up would have
			// these deliveries attempted a second time with no fault.
			if !postgres.Conflict(err) {
				if attempt++; attempt > 5 {
					// Let go: the claims end and the deliveries are attempted again.
					break
				}
			}
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
		}
		for _, o := range batch {
			w.leases.release(o.Job.DeliveryID, o.Job.Attempt)
		}
	}
}

// write logs a batch (Ledger.Log) and acts on what it announces.
func (w *resultWriter) write(ctx context.Context, batch []delivery.Outcome) error {
	a, err := w.ledger.Log(ctx, batch)
	if err != nil {
		return err
	}
	w.metrics.outcomesLogged(len(batch))
	w.announce(ctx, a)
	return nil
}

// announce reports what a committed batch disabled, and queues its
// operational events (never before the outcomes are durably written).
func (w *resultWriter) announce(ctx context.Context, a delivery.Announcements) {
	for _, d := range a.Disabled {
		w.onDisable(ctx, d.Tenant, d.ID, d.Reason)
	}
	if w.notify != nil {
		for _, n := range a.Notices {
			w.notify(n)
		}
	}
}
