package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// TestNoSequentialScans loads a large timeline (EXPLAIN_ROWS, default
// 1,000,000 events) and EXPLAINs every filter combination the API offers:
// none may plan a sequential scan. The plans are made the way the API runs
// them: as the application role under row-level security (TenantTx).
func TestNoSequentialScans(t *testing.T) {
	t.Parallel()
	n := 1_000_000
	if s := os.Getenv("EXPLAIN_ROWS"); s != "" {
		var err error
		n, err = strconv.Atoi(s)
		require.NoError(t, err)
	}
	pool := testenv.Pool(t)
	ctx := context.Background()
	start := time.Now()
	loadSynthetic(t, pool, n)
	t.Logf("loaded %d events in %v", n, time.Since(start).Round(time.Millisecond))

	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	objects := []*events.Ref{nil, {Type: "board", ID: "b7"}, {Type: "card", ID: "card42"}}
	actions := [][2][]string{{}, {nil, {"closed"}}, {{"card.closed"}, nil}, {{"card.closed", "comment.created"}, nil}, {{"card.closed"}, {"moved", "assigned"}}, {nil, {"moved", "assigned"}}}
	creators := []*events.Ref{nil, {Type: "user", ID: "u7"}}
	eventableTypes := []string{"", "comment"}
	windows := [][2]time.Time{{}, {at, time.Time{}}, {time.Time{}, at}, {at, at.Add(24 * time.Hour)}}
	cursors := []*cursor{nil, {Version: 1, Tenant: "acme", OccurredAt: at.Add(48 * time.Hour).UnixMicro(), Seq: 1 << 40}}
	plans := 0
	for _, obj := range objects {
		for _, act := range actions {
			for _, cr := range creators {
				for _, et := range eventableTypes {
					for _, w := range windows {
						for _, c := range cursors {
							q := Query{Tenant: "acme", Object: obj, Types: act[0], Actions: act[1], Creator: cr, EventableType: et, Since: w[0], Until: w[1], After: c, Limit: 50}
							sql, args := q.sql(1)
							var plan []byte
							require.NoError(t, postgres.TenantTx(ctx, pool, "acme", func(tx pgx.Tx) error {
								return tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql, args...).Scan(&plan)
							}))
							if node := findSeqScan(t, plan); node != "" {
								t.Errorf("sequential scan on %s for %+v:\n%s", node, q, sql)
							}
							plans++
						}
					}
				}
			}
		}
	}
	t.Logf("%d filter combinations explained, none with a sequential scan", plans)
}

// findSeqScan returns the relation of the first Seq Scan node in an EXPLAIN
// (FORMAT JSON) plan, or "".
func findSeqScan(t *testing.T, plan []byte) string {
	t.Helper()
	var doc []struct{ Plan map[string]any }
	require.NoError(t, json.Unmarshal(plan, &doc))
	var walk func(n map[string]any) string
	walk = func(n map[string]any) string {
		if n["Node Type"] == "Seq Scan" {
			return fmt.Sprint(n["Relation Name"])
		}
		kids, _ := n["Plans"].([]any)
		for _, k := range kids {
			if r := walk(k.(map[string]any)); r != "" {
				return r
			}
		}
		return ""
	}
	return walk(doc[0].Plan)
}
