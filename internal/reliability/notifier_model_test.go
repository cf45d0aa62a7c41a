//go:build reliability

package reliability

import (
	"context"
	"fmt"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// inboxWatcher watches every board of the load; the system's notification
// rules make every event notify the watchers of its board, so each
// acknowledged event adds exactly one to the watcher's unread counts.
const inboxWatcher = "reliability-watcher"

// setUpInbox gives the tenant one rule — every event notifies the watchers
// of its board, grouped by eventable — and makes inboxWatcher watch every
// board the load uses.
func (s *system) setUpInbox() {
	s.t.Helper()
	url := s.svc("notifier").URL
	rules := `{"rules":[{"event":"*","group":"eventable","notify":{"watchers_of":["board"]}}]}`
	require.Equal(s.t, http.StatusOK, s.call(http.MethodPut, url+"/v1/notification-rules", rules, nil))
	for b := range loadBoards {
		require.Equal(s.t, http.StatusOK, s.call(http.MethodPut, fmt.Sprintf("%s/v1/watches/board/b%d/users/%s", url, b, inboxWatcher), "", nil))
	}
}

// inboxModel checks the notifier: every acknowledged event was applied
// (its de-duplication key exists, written in the transaction that bumped
// the inbox), and the watcher's unread counts add up to exactly the number
// of events applied — a redelivery that bumped a count twice shows as an
// excess.
type inboxModel struct {
	pool   *pgxpool.Pool
	tenant string
}

func (inboxModel) Name() string { return "notifier unread counts" }

func (m inboxModel) Check(ctx context.Context, acked []string) (ModelTally, error) {
	applied := map[string]int{}
	if err := scanCounts(ctx, m.pool, applied, `SELECT event_id, 1 FROM notify.processed WHERE tenant = $1`, m.tenant); err != nil {
		return ModelTally{}, err
	}
	var unread int
	if err := m.pool.QueryRow(ctx, `SELECT coalesce(sum(unread_count), 0) FROM notify.notifications WHERE tenant = $1 AND user_id = $2`,
		m.tenant, inboxWatcher).Scan(&unread); err != nil {
		return ModelTally{}, err
	}
	var t ModelTally
	for _, id := range acked {
		if applied[id] == 0 {
			t.Lost++
		}
	}
	// Each applied event adds one to the watcher's counts (the harness's
	// own probes may lack a board and add none): more is a double count.
	if unread > len(applied) {
		t.Duplicated = unread - len(applied)
	}
	return t, nil
}
