package notifier

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Hub fans inbox changes out to SSE subscribers. It holds one Postgres
// connection that LISTENs to the changes every replica NOTIFYs when its
// transaction commits, so a subscriber hears of a change whichever replica
// wrote it.
type Hub struct {
	pool    *pgxpool.Pool
	log     *slog.Logger
	metrics *Metrics

	mu     sync.Mutex
	subs   map[subKey]map[*subscriber]struct{}
	closed bool
	ready  chan struct{}
	once   sync.Once
}

type subKey struct{ tenant, user string }

type subscriber struct {
	ch   chan Change
	gone chan struct{} // closed when the hub drops the subscriber
}

// NewHub returns a Hub; Run must be running for it to deliver.
func NewHub(pool *pgxpool.Pool, m *Metrics, log *slog.Logger) *Hub {
	return &Hub{pool: pool, log: log, metrics: m, subs: map[subKey]map[*subscriber]struct{}{}, ready: make(chan struct{})}
}

// Listening is closed once the hub's first LISTEN is in place.
func (h *Hub) Listening() <-chan struct{} { return h.ready }

// Run listens until ctx ends, reconnecting (with a short backoff) when the
// connection breaks. Subscribers are dropped on reconnect, since changes
// may have been missed; their clients reconnect with Last-Event-ID.
func (h *Hub) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := h.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		h.log.WarnContext(ctx, "inbox change listener stopped; reconnecting", "error", err)
		h.dropAll()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(5*time.Second, backoff*2)
	}
}

func (h *Hub) listen(ctx context.Context) error {
	conn, err := h.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection is left in LISTEN state: take it out of the pool.
	pc := conn.Hijack()
	defer pc.Close(context.WithoutCancel(ctx))
	if _, err := pc.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	h.once.Do(func() { close(h.ready) })
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var changes []Change
		if err := json.Unmarshal([]byte(n.Payload), &changes); err != nil {
			h.log.WarnContext(ctx, "undecodable inbox change", "error", err)
			continue
		}
		for _, c := range changes {
			h.dispatch(c)
		}
	}
}

func (h *Hub) dispatch(c Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[subKey{c.Tenant, c.UserID}] {
		select {
		case s.ch <- c:
		default: // too slow: drop it; the client reconnects and catches up
			h.removeLocked(subKey{c.Tenant, c.UserID}, s)
		}
	}
}

// Subscribe registers a subscriber for one user's inbox.
func (h *Hub) Subscribe(tenant, user string) (*subscriber, func()) {
	s := &subscriber{ch: make(chan Change, 256), gone: make(chan struct{})}
	k := subKey{tenant, user}
	h.mu.Lock()
	if h.closed {
		close(s.gone)
	} else {
		if h.subs[k] == nil {
			h.subs[k] = map[*subscriber]struct{}{}
		}
		h.subs[k][s] = struct{}{}
		h.metrics.subscribers(1)
	}
	h.mu.Unlock()
	return s, func() {
		h.mu.Lock()
		h.removeLocked(k, s)
		h.mu.Unlock()
	}
}

func (h *Hub) removeLocked(k subKey, s *subscriber) {
	if _, ok := h.subs[k][s]; !ok {
		return
	}
	delete(h.subs[k], s)
	if len(h.subs[k]) == 0 {
		delete(h.subs, k)
	}
	close(s.gone)
	h.metrics.subscribers(-1)
}

func (h *Hub) dropAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, set := range h.subs {
		for s := range set {
			h.removeLocked(k, s)
		}
	}
}

// Close ends every stream and refuses new ones (server shutdown).
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.dropAll()
}

// eventID is an SSE id: the change's updated_at in Unix microseconds and
// the notification id, so a client reconnecting with Last-Event-ID gets
// what changed after it.
func eventID(at time.Time, id string) string {
	return strconv.FormatInt(at.UnixMicro(), 10) + "-" + id
}

func parseEventID(s string) (at time.Time, id int64, ok bool) {
	a, b, found := strings.Cut(s, "-")
	us, err1 := strconv.ParseInt(a, 10, 64)
	n, err2 := strconv.ParseInt(b, 10, 64)
	if !found || err1 != nil || err2 != nil || us < 0 || n < 0 {
		return time.Time{}, 0, false
	}
	return time.UnixMicro(us).UTC(), n, true
}

// stream serves GET /v1/users/{user_id}/notifications/stream.
func (a *API) stream(w http.ResponseWriter, r *http.Request) {
	tenant, user, ok := a.user(w, r)
	if !ok {
		return
	}
	rc := http.NewResponseController(w)
	sub, cancel := a.hub.Subscribe(tenant, user)
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: 2000\n\n")
	// Catch up after a reconnect: what changed since Last-Event-ID.
	if at, id, ok := parseEventID(r.Header.Get("Last-Event-ID")); ok {
		ns, err := a.store.changedSince(r.Context(), tenant, user, at, id)
		if err != nil {
			a.log.WarnContext(r.Context(), "inbox catch-up failed", "error", err)
			return
		}
		for _, n := range ns {
			g := n.Group
			writeChange(w, Change{Kind: "notification", ID: n.ID, Group: &g, UnreadCount: n.UnreadCount, UpdatedAt: n.UpdatedAt})
		}
	}
	if err := rc.Flush(); err != nil {
		return
	}
	heartbeat := time.NewTicker(a.heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-sub.gone:
			return
		case <-heartbeat.C:
			fmt.Fprintf(w, ": heartbeat\n\n")
		case c := <-sub.ch:
			writeChange(w, c)
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func writeChange(w http.ResponseWriter, c Change) {
	c.Tenant = ""
	b, _ := json.Marshal(c)
	if c.ID != "" && c.Kind == "notification" {
		fmt.Fprintf(w, "id: %s\n", eventID(c.UpdatedAt, c.ID))
	}
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", c.Kind, b)
}

// changedSince returns the notifications changed after (at, id), oldest
// first, at most 500 (SSE catch-up).
func (s *Store) changedSince(ctx context.Context, tenant, user string, at time.Time, id int64) ([]Notification, error) {
	b := &pgx.Batch{}
	b.Queue(`SELECT `+notificationCols+` FROM notify.notifications
		WHERE tenant = $1 AND user_id = $2 AND (updated_at, id) > ($3, $4)
		ORDER BY updated_at, id LIMIT 500`, tenant, user, at, id)
	var ns []Notification
	err := s.read(ctx, tenant, b, func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		ns, err = pgx.CollectRows(rows, scanNotification)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("inbox catch-up: %w", err)
	}
	return ns, nil
}
