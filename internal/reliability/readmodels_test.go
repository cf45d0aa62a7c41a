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

func (m timelineModel) Check(ctx context.Context, acked []string) (ModelTally, error) {
	var g int
	if err := m.pool.QueryRow(ctx, "SELECT generation FROM timeline.current").Scan(&g); err != nil {
		return ModelTally{}, err
	}
	rows, err := m.pool.Query(ctx, fmt.Sprintf(`
		SELECT e.id, count(*) FILTER (WHERE n.event_id IS NOT NULL),
		       jsonb_array_length(e.parents) + 1
		FROM timeline_g%d.events e
		LEFT JOIN timeline_g%d.entries n ON n.tenant = e.tenant AND n.event_id = e.id
		WHERE e.tenant = $1 AND e.id = ANY($2)
		GROUP BY e.id, e.parents`, g, g), m.tenant, acked)
	if err != nil {
		return ModelTally{}, err
	}
	defer rows.Close()
	var t ModelTally
	found := 0
	for rows.Next() {
		var id string
		var entries, want int
		if err := rows.Scan(&id, &entries, &want); err != nil {
			return ModelTally{}, err
		}
		found++
		if entries > want {
			t.Duplicated++
		}
		if entries < want {
			t.Lost++ // the event row is there but a timeline lacks it
		}
	}
	if err := rows.Err(); err != nil {
		return ModelTally{}, err
	}
	t.Lost += len(acked) - found
	return t, nil
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
	rows, err := m.pool.Query(ctx, `
		SELECT event_id, count(*), count(*) FILTER (WHERE status = 'succeeded')
		FROM webhook.deliveries
		WHERE tenant = $1 AND endpoint_id = $2 AND event_id = ANY($3)
		GROUP BY event_id`, m.tenant, m.endpoint, acked)
	if err != nil {
		return ModelTally{}, err
	}
	defer rows.Close()
	var t ModelTally
	for rows.Next() {
		var id string
		var n, ok int
		if err := rows.Scan(&id, &n, &ok); err != nil {
			return ModelTally{}, err
		}
		if n > 1 {
			t.Duplicated++
		}
		if ok == 0 {
			t.Lost++ // not (yet) delivered
		}
	}
	if err := rows.Err(); err != nil {
		return ModelTally{}, err
	}
	// Events without any delivery row.
	var have int
	if err := m.pool.QueryRow(ctx, `SELECT count(DISTINCT event_id) FROM webhook.deliveries
		WHERE tenant = $1 AND endpoint_id = $2 AND event_id = ANY($3)`, m.tenant, m.endpoint, acked).Scan(&have); err != nil {
		return ModelTally{}, err
	}
	t.Lost += len(acked) - have
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
