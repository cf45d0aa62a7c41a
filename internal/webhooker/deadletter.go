package webhooker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
)

// ReplayDeadLetter fans a dead-lettered event out again (`eventline dlq
// replay --consumer webhooker`): it records a delivery for every endpoint
// that matches the event now and has none for it, due now and claimed by
// no one, so the running webhookers' schedulers claim and attempt them at
// their next pass; then it marks the letter replayed. Running it twice
// creates nothing twice. It needs no secret key: matching reads no
// secrets. poison is why the letter still cannot be fanned out.
func ReplayDeadLetter(ctx context.Context, pool *pgxpool.Pool, l deadletter.Letter) (poison, err error) {
	ev, poison, err := deadletter.Event(ctx, pool, l)
	if err != nil || poison != nil {
		return poison, err
	}
	rows, err := pool.Query(ctx, `SELECT id, events, parents FROM webhook.endpoints WHERE tenant = $1 AND enabled AND deleted_at IS NULL`, ev.Tenant)
	if err != nil {
		return nil, fmt.Errorf("load endpoints: %w", err)
	}
	eps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (endpoint.Endpoint, error) {
		e := endpoint.Endpoint{Enabled: true}
		var parents []byte
		if err := r.Scan(&e.ID, &e.Events, &parents); err != nil {
			return e, err
		}
		if len(parents) > 0 {
			if err := json.Unmarshal(parents, &e.Parents); err != nil {
				return e, fmt.Errorf("decode the parents of webhook %s: %w", e.ID, err)
			}
		}
		return e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("load endpoints: %w", err)
	}
	var jobs []delivery.Job
	for _, e := range eps {
		if e.Matches(ev) {
			jobs = append(jobs, delivery.Job{DeliveryID: delivery.NewID(), Tenant: ev.Tenant, EndpointID: e.ID, Event: ev, Attempt: 1})
		}
	}
	now := time.Now()
	lg := delivery.NewLedger(pool, delivery.DisableRule{}, 0) // records no outcome: its tracker settings are never used
	for len(jobs) > 0 {                                       // due now, for any replica's scheduler
		n := min(len(jobs), maxInsert)
		if _, _, err := lg.Record(ctx, []delivery.Item{{Jobs: jobs[:n], Shared: true}}, now, now.Add(time.Minute)); err != nil {
			return nil, err
		}
		jobs = jobs[n:]
	}
	return nil, deadletter.MarkReplayed(ctx, pool, l.Consumer, l.StreamSeq)
}
