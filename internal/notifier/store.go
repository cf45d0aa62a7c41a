package notifier

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/render"
	"github.com/eventline/eventline/pkg/events"
)

// ErrNotFound is returned for a notification that does not exist for the
// tenant and user.
var ErrNotFound = errors.New("not found")

// Notification is one inbox entry: everything that happened in one group
// for one user.
type Notification struct {
	ID          string          `json:"id"`
	Group       events.Ref      `json:"group"`
	UnreadCount int             `json:"unread_count"`
	LastEvent   json.RawMessage `json:"last_event"`
	ReadAt      *time.Time      `json:"read_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	// Sentence is the latest event's sentence and GroupName how it names
	// the group ("card *Fix login*"), with the tenant's templates
	// (internal/render): what the inbox component shows.
	Sentence  *render.Rendered `json:"sentence,omitempty"`
	GroupName *render.Rendered `json:"group_name,omitempty"`
}

const notificationCols = `id, group_type, group_id, unread_count, last_event, read_at, updated_at`

func scanNotification(r pgx.CollectableRow) (Notification, error) {
	var n Notification
	var id int64
	err := r.Scan(&id, &n.Group.Type, &n.Group.ID, &n.UnreadCount, &n.LastEvent, &n.ReadAt, &n.UpdatedAt)
	n.ID = strconv.FormatInt(id, 10)
	return n, err
}

// Preferences are a user's email settings.
type Preferences struct {
	Email    string `json:"email"`
	Digest   string `json:"digest"`
	Timezone string `json:"timezone"`
}

// defaultPreferences apply to a user who has none: Fizzy's default
// frequency, but no address to send to.
func defaultPreferences() Preferences {
	return Preferences{Digest: DigestEveryFewHours, Timezone: "UTC"}
}

// Store reads and writes the notifier's tables for the API. Every method
// runs as its tenant under row-level security (postgres.TenantTx or
// TenantBatch), and every query filters by tenant too. The consumer, the
// digest scheduler and the SSE listener do not use Store: they work across
// tenants as the owner.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

// NewStore returns a Store over pool.
func NewStore(pool *pgxpool.Pool, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{pool: pool, now: now}
}

// read runs b's statements as tenant in one read-only transaction,
// pipelined with its start (postgres.TenantBatch): two round trips.
func (s *Store) read(ctx context.Context, tenant string, b *pgx.Batch, fn func(pgx.BatchResults) error) error {
	return postgres.TenantBatch(ctx, s.pool, tenant, pgx.TxOptions{AccessMode: pgx.ReadOnly}, b, fn)
}

// exec runs one statement as tenant in its own transaction, pipelined with
// its start like read (two round trips), and hands its result to fn.
func (s *Store) exec(ctx context.Context, tenant string, fn func(pgx.BatchResults) error, sql string, args ...any) error {
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	return postgres.TenantBatch(ctx, s.pool, tenant, pgx.TxOptions{}, b, fn)
}

// Page is one page of a user's inbox.
type Page struct {
	Notifications []Notification `json:"notifications"`
	UnreadTotal   int            `json:"unread_total"`
	NextCursor    *string        `json:"next_cursor"`
}

// InboxQuery selects a page of an inbox.
type InboxQuery struct {
	Tenant, UserID string
	UnreadOnly     bool
	Limit          int
	After          *cursor
}

// Inbox returns a page, newest first, and the user's unread total (the
// number of unread notifications).
func (s *Store) Inbox(ctx context.Context, q InboxQuery) (Page, error) {
	sql := `SELECT ` + notificationCols + ` FROM notify.notifications WHERE tenant = $1 AND user_id = $2`
	args := []any{q.Tenant, q.UserID}
	if q.UnreadOnly {
		sql += ` AND read_at IS NULL`
	}
	if q.After != nil {
		sql += ` AND (updated_at, id) < ($3, $4)`
		args = append(args, q.After.time(), q.After.ID)
	}
	sql += fmt.Sprintf(` ORDER BY updated_at DESC, id DESC LIMIT %d`, q.Limit+1)
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	b.Queue(`SELECT count(*) FROM notify.notifications WHERE tenant = $1 AND user_id = $2 AND read_at IS NULL`, q.Tenant, q.UserID)
	var ns []Notification
	var unread int
	err := s.read(ctx, q.Tenant, b, func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return fmt.Errorf("list notifications: %w", err)
		}
		if ns, err = pgx.CollectRows(rows, scanNotification); err != nil {
			return fmt.Errorf("list notifications: %w", err)
		}
		if err := br.QueryRow().Scan(&unread); err != nil {
			return fmt.Errorf("count unread: %w", err)
		}
		return nil
	})
	if err != nil {
		return Page{}, err
	}
	p := Page{Notifications: ns, UnreadTotal: unread}
	if len(ns) > q.Limit {
		p.Notifications = ns[:q.Limit]
		last := p.Notifications[q.Limit-1]
		id, _ := strconv.ParseInt(last.ID, 10, 64)
		c := encodeCursor(cursor{Tenant: q.Tenant, User: q.UserID, At: last.UpdatedAt.UnixMicro(), ID: id})
		p.NextCursor = &c
	}
	if p.Notifications == nil {
		p.Notifications = []Notification{}
	}
	return p, nil
}

// MarkRead marks one notification read (unread_count 0) and NOTIFYs it.
// Like every inbox change it takes the user's next inbox sequence, under
// the lock of the user's inbox row, taken first. A notification read
// already is returned as it is: nothing changes.
func (s *Store) MarkRead(ctx context.Context, tenant, user string, id int64) (Notification, error) {
	var n Notification
	err := postgres.TenantTx(ctx, s.pool, tenant, func(tx pgx.Tx) error {
		seq, total, err := lockInbox(ctx, tx, tenant, user)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `UPDATE notify.notifications SET read_at = $4, unread_count = 0, change_seq = $5
			WHERE tenant = $1 AND user_id = $2 AND id = $3 AND read_at IS NULL RETURNING `+notificationCols,
			tenant, user, id, s.now().UTC(), seq+1)
		if err != nil {
			return err
		}
		n, err = pgx.CollectExactlyOneRow(rows, scanNotification)
		if errors.Is(err, pgx.ErrNoRows) {
			rows, err := tx.Query(ctx, `SELECT `+notificationCols+` FROM notify.notifications WHERE tenant = $1 AND user_id = $2 AND id = $3`, tenant, user, id)
			if err != nil {
				return err
			}
			n, err = pgx.CollectExactlyOneRow(rows, scanNotification)
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE notify.inboxes SET seq = $3, unread_total = unread_total - 1 WHERE tenant = $1 AND user_id = $2`,
			tenant, user, seq+1); err != nil {
			return err
		}
		g := n.Group
		return publishChanges(ctx, tx, []Change{{Kind: "read", Tenant: tenant, UserID: user, ID: n.ID, Group: &g, UpdatedAt: n.UpdatedAt,
			Seq: seq + 1, UnreadTotal: total - 1}})
	})
	return n, err
}

// lockInbox locks a user's inbox row, the first lock of every inbox
// change, and returns its sequence and unread total; ErrNotFound for a
// user without notifications.
func lockInbox(ctx context.Context, tx pgx.Tx, tenant, user string) (seq int64, unread int, err error) {
	err = tx.QueryRow(ctx, `SELECT seq, unread_total FROM notify.inboxes WHERE tenant = $1 AND user_id = $2 FOR UPDATE`, tenant, user).Scan(&seq, &unread)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, ErrNotFound
	}
	return seq, unread, err
}

// MarkAllRead marks every unread notification of a user read and returns
// how many were. Each takes an inbox sequence (in the order they last
// changed); one read_all change, with the last of them, is NOTIFYed.
func (s *Store) MarkAllRead(ctx context.Context, tenant, user string) (int64, error) {
	var n int64
	now := s.now().UTC()
	err := postgres.TenantTx(ctx, s.pool, tenant, func(tx pgx.Tx) error {
		seq, _, err := lockInbox(ctx, tx, tenant, user)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE notify.notifications n SET read_at = $3, unread_count = 0, change_seq = $4 + r.k
			FROM (SELECT id, row_number() OVER (ORDER BY change_seq) AS k FROM notify.notifications
				WHERE tenant = $1 AND user_id = $2 AND read_at IS NULL) r
			WHERE n.id = r.id`, tenant, user, now, seq)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		if n == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE notify.inboxes SET seq = $3, unread_total = 0 WHERE tenant = $1 AND user_id = $2`,
			tenant, user, seq+n); err != nil {
			return err
		}
		return publishChanges(ctx, tx, []Change{{Kind: "read_all", Tenant: tenant, UserID: user, UpdatedAt: now, Seq: seq + n}})
	})
	return n, err
}

// Watch is one user watching one object.
type Watch struct {
	Object    events.Ref `json:"object"`
	UserID    string     `json:"user_id"`
	CreatedAt time.Time  `json:"created_at"`
}

// AddWatch makes user watch obj (idempotent).
func (s *Store) AddWatch(ctx context.Context, tenant string, obj events.Ref, user string) (Watch, error) {
	var w Watch
	err := s.exec(ctx, tenant, func(br pgx.BatchResults) error { return br.QueryRow().Scan(&w.CreatedAt) }, `WITH ins AS (
			INSERT INTO notify.watches (tenant, object_type, object_id, user_id, created_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT DO NOTHING RETURNING created_at)
		SELECT created_at FROM ins
		UNION ALL SELECT created_at FROM notify.watches WHERE tenant = $1 AND object_type = $2 AND object_id = $3 AND user_id = $4
		LIMIT 1`, tenant, obj.Type, obj.ID, user, s.now().UTC())
	if err != nil {
		return Watch{}, fmt.Errorf("add watch: %w", err)
	}
	w.Object, w.UserID = obj, user
	return w, nil
}

// RemoveWatch stops user watching obj; false when they did not.
func (s *Store) RemoveWatch(ctx context.Context, tenant string, obj events.Ref, user string) (bool, error) {
	var removed bool
	err := s.exec(ctx, tenant, func(br pgx.BatchResults) error {
		tag, err := br.Exec()
		removed = tag.RowsAffected() > 0
		return err
	}, `DELETE FROM notify.watches WHERE tenant = $1 AND object_type = $2 AND object_id = $3 AND user_id = $4`,
		tenant, obj.Type, obj.ID, user)
	if err != nil {
		return false, fmt.Errorf("remove watch: %w", err)
	}
	return removed, nil
}

// WatchPage is one page of a user's watches, newest first.
type WatchPage struct {
	Watches    []Watch `json:"watches"`
	NextCursor *string `json:"next_cursor"`
}

// Watches lists what a user watches, newest first.
func (s *Store) Watches(ctx context.Context, tenant, user string, limit int, after *cursor) (WatchPage, error) {
	sql := `SELECT object_type, object_id, created_at FROM notify.watches WHERE tenant = $1 AND user_id = $2`
	args := []any{tenant, user}
	if after != nil {
		sql += ` AND (created_at, object_type, object_id) < ($3, $4, $5)`
		args = append(args, after.time(), after.ObjType, after.ObjID)
	}
	sql += fmt.Sprintf(` ORDER BY created_at DESC, object_type DESC, object_id DESC LIMIT %d`, limit+1)
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	var ws []Watch
	err := s.read(ctx, tenant, b, func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		ws, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Watch, error) {
			w := Watch{UserID: user}
			err := r.Scan(&w.Object.Type, &w.Object.ID, &w.CreatedAt)
			return w, err
		})
		return err
	})
	if err != nil {
		return WatchPage{}, fmt.Errorf("list watches: %w", err)
	}
	p := WatchPage{Watches: ws}
	if len(ws) > limit {
		p.Watches = ws[:limit]
		last := p.Watches[limit-1]
		c := encodeCursor(cursor{Tenant: tenant, User: user, At: last.CreatedAt.UnixMicro(), ObjType: last.Object.Type, ObjID: last.Object.ID})
		p.NextCursor = &c
	}
	if p.Watches == nil {
		p.Watches = []Watch{}
	}
	return p, nil
}

// Preferences returns a user's preferences, or the defaults.
func (s *Store) Preferences(ctx context.Context, tenant, user string) (p Preferences, err error) {
	b := &pgx.Batch{}
	b.Queue(preferencesSQL, tenant, user)
	err = s.read(ctx, tenant, b, func(br pgx.BatchResults) error {
		p, err = scanPreferences(br.QueryRow())
		return err
	})
	return p, err
}

const preferencesSQL = `SELECT email, digest, timezone FROM notify.preferences WHERE tenant = $1 AND user_id = $2`

// getPreferences reads a user's preferences as the owner (the digest
// sender, which works across tenants).
func getPreferences(ctx context.Context, pool *pgxpool.Pool, tenant, user string) (Preferences, error) {
	return scanPreferences(pool.QueryRow(ctx, preferencesSQL, tenant, user))
}

// scanPreferences scans a preferencesSQL row, or returns the defaults for
// a user who has none.
func scanPreferences(row pgx.Row) (Preferences, error) {
	p := defaultPreferences()
	err := row.Scan(&p.Email, &p.Digest, &p.Timezone)
	if errors.Is(err, pgx.ErrNoRows) {
		return defaultPreferences(), nil
	}
	if err != nil {
		return Preferences{}, fmt.Errorf("read preferences: %w", err)
	}
	return p, nil
}

// SetPreferences stores a user's preferences. As in Fizzy, a change of
// frequency sends the pending digest now, and "never" cancels it.
func (s *Store) SetPreferences(ctx context.Context, tenant, user string, p Preferences) error {
	return postgres.TenantTx(ctx, s.pool, tenant, func(tx pgx.Tx) error {
		return s.setPreferences(ctx, tx, tenant, user, p)
	})
}

func (s *Store) setPreferences(ctx context.Context, tx pgx.Tx, tenant, user string, p Preferences) error {
	now := s.now().UTC()
	var old string
	err := tx.QueryRow(ctx, `SELECT digest FROM notify.preferences WHERE tenant = $1 AND user_id = $2 FOR UPDATE`, tenant, user).Scan(&old)
	if errors.Is(err, pgx.ErrNoRows) {
		err = nil // a user without preferences
	}
	if err != nil {
		return fmt.Errorf("read preferences: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO notify.preferences (tenant, user_id, email, digest, timezone, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (tenant, user_id) DO UPDATE SET email = excluded.email, digest = excluded.digest,
			timezone = excluded.timezone, updated_at = excluded.updated_at`,
		tenant, user, p.Email, p.Digest, p.Timezone, now); err != nil {
		return fmt.Errorf("store preferences: %w", err)
	}
	switch {
	case p.Digest == DigestNever || p.Email == "":
		_, err = tx.Exec(ctx, `UPDATE notify.digests SET status = 'skipped', last_error = 'unsubscribed or no email address'
			WHERE tenant = $1 AND user_id = $2 AND status = 'pending'`, tenant, user)
	case old != "" && old != p.Digest:
		_, err = tx.Exec(ctx, `UPDATE notify.digests SET ends_at = least(ends_at, $3), next_attempt_at = least(next_attempt_at, $3)
			WHERE tenant = $1 AND user_id = $2 AND status = 'pending'`, tenant, user, now)
	}
	if err != nil {
		return fmt.Errorf("update pending digest: %w", err)
	}
	return nil
}

// Unsubscribe sets a user's digest to never (one-click unsubscribe).
func (s *Store) Unsubscribe(ctx context.Context, tenant, user string) error {
	return postgres.TenantTx(ctx, s.pool, tenant, func(tx pgx.Tx) error {
		p, err := scanPreferences(tx.QueryRow(ctx, preferencesSQL+` FOR UPDATE`, tenant, user))
		if err != nil {
			return err
		}
		p.Digest = DigestNever
		return s.setPreferences(ctx, tx, tenant, user, p)
	})
}

// RulesOf returns a tenant's rules and whether they are the defaults.
func (s *Store) RulesOf(ctx context.Context, tenant string) (Rules, bool, error) {
	var raw []byte
	b := &pgx.Batch{}
	b.Queue(`SELECT rules FROM notify.rules WHERE tenant = $1`, tenant)
	err := s.read(ctx, tenant, b, func(br pgx.BatchResults) error { return br.QueryRow().Scan(&raw) })
	if errors.Is(err, pgx.ErrNoRows) {
		return DefaultRules(), true, nil
	}
	if err != nil {
		return Rules{}, false, fmt.Errorf("read rules: %w", err)
	}
	rs, err := ParseRules(raw)
	if err != nil {
		return Rules{}, false, fmt.Errorf("stored rules: %w", err)
	}
	return rs, false, nil
}

// SetRules stores a tenant's (validated) rules.
func (s *Store) SetRules(ctx context.Context, tenant string, rs Rules) error {
	raw, err := json.Marshal(rs)
	if err != nil {
		return err
	}
	err = s.exec(ctx, tenant, execOnly, `INSERT INTO notify.rules (tenant, rules, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (tenant) DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at`, tenant, raw, s.now().UTC())
	if err != nil {
		return fmt.Errorf("store rules: %w", err)
	}
	return nil
}

// ResetRules returns a tenant to the default rules.
func (s *Store) ResetRules(ctx context.Context, tenant string) error {
	if err := s.exec(ctx, tenant, execOnly, `DELETE FROM notify.rules WHERE tenant = $1`, tenant); err != nil {
		return fmt.Errorf("reset rules: %w", err)
	}
	return nil
}

// execOnly reads the result of a statement that returns no rows.
func execOnly(br pgx.BatchResults) error {
	_, err := br.Exec()
	return err
}

// cursor is a keyset position bound to the tenant and user that received
// it: (updated_at, id) for notifications, (created_at, object) for watches.
type cursor struct {
	Version int    `json:"v"`
	Tenant  string `json:"t"`
	User    string `json:"u"`
	At      int64  `json:"a"` // Unix microseconds
	ID      int64  `json:"i,omitempty"`
	ObjType string `json:"ot,omitempty"`
	ObjID   string `json:"oi,omitempty"`
}

var errBadCursor = errors.New("cursor is not valid: pass back next_cursor exactly as received, with the same key and user")

func encodeCursor(c cursor) string {
	c.Version = 1
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s, tenant, user string) (cursor, error) {
	if len(s) > 2048 {
		return cursor{}, errBadCursor
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return cursor{}, errBadCursor
	}
	var c cursor
	if err := json.Unmarshal(raw, &c); err != nil || c.Version != 1 || c.Tenant != tenant || c.User != user || c.ID < 0 {
		return cursor{}, errBadCursor
	}
	return c, nil
}

func (c cursor) time() time.Time { return time.UnixMicro(c.At).UTC() }
