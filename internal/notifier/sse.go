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

	"github.com/eventline/eventline/internal/browser"
	"github.com/eventline/eventline/pkg/events"
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

// SSE ids. Every inbox change takes the user's next inbox sequence in the
// transaction that makes it (Change.Seq), and one user's changes commit in
// that order, so the sequence is the change's id: a stream sends ids in
// increasing order, and a client that reconnects with Last-Event-ID N gets
// every notification changed after N — each once, in its latest state,
// with the id of its latest change (a notification changed twice since N
// comes once) — and then the live changes after those. Nothing at or
// below N is sent again.
//
// Ids of the form "<updated_at µs>-<notification id>" come from streams
// before inbox sequences: such a client gets the notifications updated
// after that time, as it did then, and ids of the new form from there on.

func eventID(seq int64) string { return strconv.FormatInt(seq, 10) }

// resumePoint is where a client's Last-Event-ID resumes.
type resumePoint struct {
	seq    int64     // resume after this inbox sequence
	legacy bool      // an old id: resume after (at, id)
	at     time.Time // legacy
	id     int64     // legacy
}

func parseLastEventID(s string) (resumePoint, bool) {
	s = strings.TrimSpace(s)
	if a, b, legacy := strings.Cut(s, "-"); legacy {
		us, err1 := strconv.ParseInt(a, 10, 64)
		n, err2 := strconv.ParseInt(b, 10, 64)
		if err1 != nil || err2 != nil || us < 0 || n < 0 {
			return resumePoint{}, false
		}
		return resumePoint{legacy: true, at: time.UnixMicro(us).UTC(), id: n}, true
	}
	seq, err := strconv.ParseInt(s, 10, 64)
	if err != nil || seq < 0 {
		return resumePoint{}, false
	}
	return resumePoint{seq: seq}, true
}

// stream serves GET /v1/users/{user_id}/notifications/stream.
func (a *API) stream(w http.ResponseWriter, r *http.Request) {
	tenant, user, ok := a.user(w, r)
	if !ok {
		return
	}
	rc := http.NewResponseController(w)
	// A stream opened with a user token ends when the token expires: the
	// client's reconnection then needs a fresh one (docs/browser.md).
	ctx := r.Context()
	if c, ok := browser.ClaimsFrom(ctx); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(c.Expires, 0))
		defer cancel()
	}
	// Subscribe before catching up: a change committed meanwhile is in the
	// catch-up or on the subscription, and sent once (by its sequence).
	sub, cancel := a.hub.Subscribe(tenant, user)
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: 2000\n\n")
	var sent int64 // the highest sequence sent (or resumed after)
	if rp, ok := parseLastEventID(r.Header.Get("Last-Event-ID")); ok {
		var err error
		sent, err = a.store.catchUp(ctx, tenant, user, rp, func(c Change) { writeChange(w, c) })
		if err != nil {
			a.log.WarnContext(ctx, "inbox catch-up failed", "error", err)
			return
		}
	}
	if err := rc.Flush(); err != nil {
		return
	}
	heartbeat := time.NewTicker(a.heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.gone:
			return
		case <-heartbeat.C:
			fmt.Fprintf(w, ": heartbeat\n\n")
		case c := <-sub.ch:
			if c.Seq == 0 {
				writeChange(w, c) // from a replica before inbox sequences: no id
				break
			}
			if c.Seq <= sent {
				continue // in the catch-up already
			}
			writeChange(w, c)
			sent = c.Seq
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func writeChange(w http.ResponseWriter, c Change) {
	c.Tenant = ""
	b, _ := json.Marshal(c)
	if c.Seq > 0 {
		fmt.Fprintf(w, "id: %s\n", eventID(c.Seq))
	}
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", c.Kind, b)
}

// catchUpPage is how many notifications one catch-up query reads.
const catchUpPage = 500

// catchUp sends, oldest change first, every notification of the user
// changed after rp, in its current state, and returns the highest
// sequence sent or resumed after (0 when rp is not a sequence of this
// inbox: nothing is skipped then). It reads pages of catchUpPage until one
// comes back short; each page is one snapshot, and a notification that
// changes between pages moves to a later sequence, so it is sent (once,
// in its latest state) by a later page or live.
func (s *Store) catchUp(ctx context.Context, tenant, user string, rp resumePoint, send func(Change)) (int64, error) {
	after := rp.seq
	for first := true; ; first = false {
		b := &pgx.Batch{}
		q := `SELECT i.seq, i.unread_total, n.id, n.group_type, n.group_id, n.unread_count, n.last_event, n.read_at, n.updated_at, n.change_seq
			FROM notify.inboxes i
			LEFT JOIN LATERAL (
				SELECT * FROM notify.notifications n
				WHERE n.tenant = i.tenant AND n.user_id = i.user_id AND n.change_seq > $3`
		args := []any{tenant, user, after}
		if rp.legacy {
			q += ` AND (n.updated_at, n.id) > ($4, $5)`
			args = append(args, rp.at, rp.id)
		}
		q += fmt.Sprintf(` ORDER BY n.change_seq LIMIT %d) n ON true
			WHERE i.tenant = $1 AND i.user_id = $2`, catchUpPage)
		b.Queue(q, args...)
		var page []Change
		var inbox int64
		err := s.read(ctx, tenant, b, func(br pgx.BatchResults) error {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var c Change
				var id *int64
				var gt, gi *string
				var count *int
				var last []byte
				var readAt, updated *time.Time
				var seq *int64
				if err := rows.Scan(&inbox, &c.UnreadTotal, &id, &gt, &gi, &count, &last, &readAt, &updated, &seq); err != nil {
					return err
				}
				if id == nil {
					continue
				}
				c.Kind, c.UserID, c.ID, c.Group = "read", user, strconv.FormatInt(*id, 10), &events.Ref{Type: *gt, ID: *gi}
				if readAt == nil {
					c.Kind = "notification"
				}
				c.UnreadCount, c.UpdatedAt, c.Seq = *count, *updated, *seq
				var le struct{ ID, Type string }
				if json.Unmarshal(last, &le) == nil {
					c.LastEventID, c.LastEventTyp = le.ID, le.Type
				}
				page = append(page, c)
			}
			return rows.Err()
		})
		if err != nil {
			return 0, fmt.Errorf("inbox catch-up: %w", err)
		}
		if first && !rp.legacy && rp.seq > inbox {
			return 0, nil // not a sequence of this inbox: resume from now
		}
		for _, c := range page {
			send(c)
			after = c.Seq
		}
		if len(page) < catchUpPage {
			return after, nil
		}
	}
}
