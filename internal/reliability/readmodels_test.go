//go:build reliability

package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// timelineModel checks the projector's tables of the current generation:
// one events row per event, and one entries row per object the event
// belongs to (the load's events have an eventable and one parent: 2 rows).
type timelineModel struct {
	pool   *pgxpool.Pool
	tenant string
}

func (timelineModel) Name() string { return "timeline" }

// Check reads the whole tenant (whole-table scans and hash aggregates:
// plans that stay fast on fresh tables without statistics) and compares
// in Go.
func (m timelineModel) Check(ctx context.Context, acked []string) (ModelTally, error) {
	var g int
	if err := m.pool.QueryRow(ctx, "SELECT generation FROM timeline.current").Scan(&g); err != nil {
		return ModelTally{}, err
	}
	want := map[string]int{} // event id -> timeline rows it must have
	if err := scanCounts(ctx, m.pool, want, fmt.Sprintf(
		`SELECT id, jsonb_array_length(parents) + 1 FROM timeline_g%d.events WHERE tenant = $1`, g), m.tenant); err != nil {
		return ModelTally{}, err
	}
	have := map[string]int{}
	if err := scanCounts(ctx, m.pool, have, fmt.Sprintf(
		`SELECT event_id, count(*) FROM timeline_g%d.entries WHERE tenant = $1 GROUP BY event_id`, g), m.tenant); err != nil {
		return ModelTally{}, err
	}
	var t ModelTally
	for _, id := range acked {
		w, ok := want[id]
		switch {
		case !ok, have[id] < w: // no event row, or a timeline lacks it
			t.Lost++
		case have[id] > w:
			t.Duplicated++
		}
	}
	return t, nil
}

// scanCounts runs a query of (text, int) rows into into.
func scanCounts(ctx context.Context, pool *pgxpool.Pool, into map[string]int, sql string, args ...any) error {
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return err
		}
		into[id] += n
	}
	return rows.Err()
}

// deliveryModel checks the webhooker's delivery log: exactly one delivery
// per (event, endpoint), and that delivery succeeded.
type deliveryModel struct {
	pool     *pgxpool.Pool
	tenant   string
	endpoint string
}

func (deliveryModel) Name() string { return "webhook.deliveries" }

func (m deliveryModel) Check(ctx context.Context, acked []string) (ModelTally, error) {
	rows, succeeded := map[string]int{}, map[string]int{}
	if err := scanCounts(ctx, m.pool, rows, `SELECT event_id, count(*) FROM webhook.deliveries
		WHERE tenant = $1 AND endpoint_id = $2 GROUP BY event_id`, m.tenant, m.endpoint); err != nil {
		return ModelTally{}, err
	}
	if err := scanCounts(ctx, m.pool, succeeded, `SELECT event_id, count(*) FROM webhook.deliveries
		WHERE tenant = $1 AND endpoint_id = $2 AND status = 'succeeded' GROUP BY event_id`, m.tenant, m.endpoint); err != nil {
		return ModelTally{}, err
	}
	var t ModelTally
	for _, id := range acked {
		if rows[id] > 1 {
			t.Duplicated++
		}
		if succeeded[id] == 0 {
			t.Lost++ // no delivery, or not (yet) delivered
		}
	}
	return t, nil
}

// receiver is a real HTTP webhook endpoint. It records every POST's
// webhook-id header and the id of the event in its body, and answers 204.
type receiver struct {
	url string

	mu       sync.Mutex
	receipts map[string]int             // webhook-id -> POSTs received
	idsOf    map[string]map[string]bool // event id -> webhook-ids it came with
	bad      []string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{receipts: map[string]int{}, idsOf: map[string]map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		var e struct{ ID string }
		if err == nil {
			err = json.Unmarshal(body, &e)
		}
		wid := req.Header.Get("webhook-id")
		r.mu.Lock()
		if err != nil || wid == "" || e.ID == "" {
			r.bad = append(r.bad, fmt.Sprintf("webhook-id %q body %.200s (%v)", wid, body, err))
		} else {
			r.receipts[wid]++
			if r.idsOf[e.ID] == nil {
				r.idsOf[e.ID] = map[string]bool{}
			}
			r.idsOf[e.ID][wid] = true
		}
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (*receiver) Name() string { return "webhook receiver" }

// Check counts an event lost when no POST carried it, duplicated when it
// came under more than one webhook-id (two messages for one event), and
// each further POST of the same webhook-id as a redelivery.
func (r *receiver) Check(_ context.Context, acked []string) (ModelTally, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var t ModelTally
	for _, id := range acked {
		wids := r.idsOf[id]
		if len(wids) == 0 {
			t.Lost++
			continue
		}
		if len(wids) > 1 {
			t.Duplicated++
		}
		for wid := range wids {
			t.Redelivered += r.receipts[wid] - 1
		}
	}
	if len(r.bad) > 0 {
		return t, fmt.Errorf("%d malformed deliveries, first: %s", len(r.bad), r.bad[0])
	}
	return t, nil
}
