package notifier

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/render"
	"github.com/eventline/eventline/pkg/events"
)

// Digest frequencies (docs/contract.md §2 preferences).
const (
	DigestNever         = "never"
	DigestEveryFewHours = "every_few_hours"
	DigestDaily         = "daily"
	DigestWeekly        = "weekly"
)

// windowEnd is the end of a digest window that starts at start. As in
// Fizzy the window is anchored at its first notification; "every few
// hours" is 4 hours, and a day or a week is a calendar day or week in the
// user's time zone (23 or 25 hours across a DST change).
func windowEnd(start time.Time, digest string, loc *time.Location) time.Time {
	switch digest {
	case DigestEveryFewHours:
		return start.Add(4 * time.Hour)
	case DigestWeekly:
		return start.In(loc).AddDate(0, 0, 7).UTC()
	default:
		return start.In(loc).AddDate(0, 0, 1).UTC()
	}
}

func loadLocation(name string) *time.Location {
	if loc, err := time.LoadLocation(name); err == nil {
		return loc
	}
	return time.UTC
}

// scheduleDigests opens a digest window, starting now, for every user
// changes notified who wants digests and has none pending. The window
// covers the inbox changes after the last one before this transaction's
// (changes are one user's in sequence order, and the user's inbox row is
// locked). It sends batch (queued statements to run first, such as the
// NOTIFY) with its own query.
func scheduleDigests(ctx context.Context, tx pgx.Tx, batch *pgx.Batch, changes []Change, now time.Time) error {
	if len(changes) == 0 {
		return nil // and no changes to NOTIFY
	}
	after := map[userKey]int64{}
	var tenants, users []string
	for _, c := range changes {
		u := userKey{c.Tenant, c.UserID}
		if s, ok := after[u]; !ok || c.Seq-1 < s {
			if !ok {
				tenants, users = append(tenants, c.Tenant), append(users, c.UserID)
			}
			after[u] = c.Seq - 1
		}
	}
	before := batch.Len()
	batch.Queue(`SELECT p.tenant, p.user_id, p.digest, p.timezone
		FROM unnest($1::text[], $2::text[]) AS r(tenant, user_id)
		JOIN notify.preferences p ON p.tenant = r.tenant AND p.user_id = r.user_id
		WHERE p.digest <> 'never' AND p.email <> ''
		  AND NOT EXISTS (SELECT 1 FROM notify.digests d WHERE d.tenant = p.tenant AND d.user_id = p.user_id AND d.status = 'pending')
		ORDER BY 1, 2`, tenants, users)
	br := tx.SendBatch(ctx, batch)
	var err error
	for range before {
		if _, err = br.Exec(); err != nil {
			_ = br.Close()
			return fmt.Errorf("notify inbox changes: %w", err)
		}
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return fmt.Errorf("load digest preferences: %w", err)
	}
	var dt, du []string
	var ends []time.Time
	var afters []int64
	for rows.Next() {
		var t, u, digest, tz string
		if err := rows.Scan(&t, &u, &digest, &tz); err != nil {
			rows.Close()
			_ = br.Close()
			return err
		}
		dt, du, ends = append(dt, t), append(du, u), append(ends, windowEnd(now, digest, loadLocation(tz)))
		afters = append(afters, after[userKey{t, u}])
	}
	if err := errors.Join(rows.Err(), br.Close()); err != nil {
		return fmt.Errorf("load digest preferences: %w", err)
	}
	if len(dt) == 0 {
		return nil
	}
	_, err = tx.Exec(ctx, `INSERT INTO notify.digests (tenant, user_id, starts_at, ends_at, next_attempt_at, after_seq)
		SELECT t, u, $3, e, e, a FROM unnest($1::text[], $2::text[], $4::timestamptz[], $5::bigint[]) AS x(t, u, e, a)
		ON CONFLICT DO NOTHING`, dt, du, now, ends, afters)
	if err != nil {
		return fmt.Errorf("schedule digests: %w", err)
	}
	return nil
}

// Mailer sends one message. SMTPMailer is the real one.
type Mailer interface {
	Send(ctx context.Context, from string, to []string, msg []byte) error
}

// DigestConfig configures digest sending.
type DigestConfig struct {
	From      string        // MAIL_FROM
	PublicURL string        // base of the unsubscribe link
	GroupURL  string        // optional link template with {type} and {id}
	Secret    []byte        // unsubscribe token key
	Mailto    string        // optional List-Unsubscribe mailto address
	Claim     time.Duration // how long a replica owns a digest it sends; default 2m
	Batch     int           // digests claimed per pass; default 50
	MaxTries  int           // attempts before a digest is given up; default 12
}

// digest is one claimed window. It covers the user's inbox changes after
// afterSeq; the sender fixes its end (upto) when it reads the window's
// notifications, and the next window starts there.
type digest struct {
	id               int64
	tenant, userID   string
	startsAt, endsAt time.Time
	afterSeq         int64
	token            string
	attempts         int
}

// digestSender claims due digests and sends them.
type digestSender struct {
	pool    *pgxpool.Pool
	mailer  Mailer
	cfg     DigestConfig
	now     func() time.Time
	log     *slog.Logger
	metrics *Metrics
	// sentences are the tenants' templates the digest's sentences use.
	sentences *render.Store
}

// tick sends every due digest it can claim and returns how many were
// handled. Several replicas may tick at once: a digest is claimed by one
// of them (FOR UPDATE SKIP LOCKED plus a claim token) and marked sent by
// the claimer only.
func (s *digestSender) tick(ctx context.Context) (int, error) {
	now := s.now().UTC()
	rows, err := s.pool.Query(ctx, `WITH due AS (
			SELECT id FROM notify.digests WHERE status = 'pending' AND next_attempt_at <= $1
			ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
		UPDATE notify.digests d SET claim_token = gen_random_uuid(), next_attempt_at = $3, attempts = d.attempts + 1
		FROM due WHERE d.id = due.id
		RETURNING d.id, d.tenant, d.user_id, d.starts_at, d.ends_at, d.after_seq, d.claim_token::text, d.attempts`,
		now, s.cfg.Batch, now.Add(s.cfg.Claim))
	if err != nil {
		return 0, fmt.Errorf("claim due digests: %w", err)
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (digest, error) {
		var d digest
		err := r.Scan(&d.id, &d.tenant, &d.userID, &d.startsAt, &d.endsAt, &d.afterSeq, &d.token, &d.attempts)
		return d, err
	})
	if err != nil {
		return 0, fmt.Errorf("claim due digests: %w", err)
	}
	for _, d := range ds {
		s.deliver(ctx, d)
	}
	return len(ds), nil
}

func (s *digestSender) deliver(ctx context.Context, d digest) {
	pref, err := getPreferences(ctx, s.pool, d.tenant, d.userID)
	if err != nil {
		s.fail(ctx, d, err)
		return
	}
	if pref.Digest == DigestNever || pref.Email == "" {
		s.finish(ctx, d, "skipped", 0, pref, nil)
		return
	}
	items, upto, err := digestItems(ctx, s.pool, d)
	if err != nil {
		s.fail(ctx, d, err)
		return
	}
	if len(items) == 0 {
		s.finish(ctx, d, "skipped", 0, pref, &upto)
		return
	}
	set, err := s.sentences.For(ctx, d.tenant)
	if err != nil {
		s.log.WarnContext(ctx, "cannot read the tenant's sentence templates; the digest uses the built-in sentences", "error", err)
	}
	msg, err := s.render(set, d, pref, items)
	if err != nil {
		s.fail(ctx, d, err)
		return
	}
	sendCtx, cancel := context.WithTimeout(ctx, s.cfg.Claim/2)
	from := s.cfg.From
	if a, err := mail.ParseAddress(from); err == nil {
		from = a.Address
	}
	err = s.mailer.Send(sendCtx, from, []string{pref.Email}, msg)
	cancel()
	if err != nil {
		s.fail(ctx, d, err)
		return
	}
	s.finish(ctx, d, "sent", len(items), pref, &upto)
}

// finish records a digest's end (sent or skipped) and the last inbox
// change it covered (upto; nil when the user no longer wants digests),
// and opens the next window when unread notifications changed after it.
// It holds the user's inbox row lock, as every inbox change does: a
// change committed before it is seen here (and opens the next window if
// unread), one committed after it finds no pending window and opens one
// itself, so every change belongs to exactly one window.
func (s *digestSender) finish(ctx context.Context, d digest, status string, n int, pref Preferences, upto *int64) {
	err := postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM notify.inboxes WHERE tenant = $1 AND user_id = $2 FOR UPDATE`, d.tenant, d.userID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE notify.digests SET status = $4, sent_at = CASE WHEN $4 = 'sent' THEN $5::timestamptz END,
				notifications = $6, claim_token = NULL, last_error = NULL, upto_seq = $7
			WHERE tenant = $1 AND id = $2 AND claim_token = $3::uuid AND status = 'pending'`,
			d.tenant, d.id, d.token, status, s.now().UTC(), n, upto)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errClaimLost
		}
		if upto == nil || pref.Digest == DigestNever || pref.Email == "" {
			return nil
		}
		var next time.Time
		err = tx.QueryRow(ctx, `SELECT updated_at FROM notify.notifications
			WHERE tenant = $1 AND user_id = $2 AND read_at IS NULL AND change_seq > $3
			ORDER BY change_seq LIMIT 1`, d.tenant, d.userID, *upto).Scan(&next)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		end := windowEnd(next, pref.Digest, loadLocation(pref.Timezone))
		_, err = tx.Exec(ctx, `INSERT INTO notify.digests (tenant, user_id, starts_at, ends_at, next_attempt_at, after_seq)
			VALUES ($1, $2, $3, $4, $4, $5) ON CONFLICT DO NOTHING`, d.tenant, d.userID, next, end, *upto)
		return err
	})
	switch {
	case errors.Is(err, errClaimLost):
		s.log.WarnContext(ctx, "digest claim lost before it was recorded", "digest_id", d.id, "status", status)
		s.metrics.digest("claim_lost")
	case err != nil:
		s.log.ErrorContext(ctx, "record digest", "digest_id", d.id, "status", status, "error", err)
		s.metrics.digest("record_failed")
	default:
		s.metrics.digest(status)
	}
}

var errClaimLost = errors.New("digest claim lost")

// fail releases a digest for a later attempt (1 min, doubling, at most an
// hour), or gives it up after MaxTries attempts.
func (s *digestSender) fail(ctx context.Context, d digest, cause error) {
	s.log.WarnContext(ctx, "digest not sent", "digest_id", d.id, "attempt", d.attempts, "error", cause)
	s.metrics.digest("failed")
	status := "pending"
	if d.attempts >= s.cfg.MaxTries {
		status = "skipped"
	}
	retry := s.now().UTC().Add(min(time.Hour, time.Minute<<min(d.attempts-1, 10)))
	_, err := s.pool.Exec(ctx, `UPDATE notify.digests SET next_attempt_at = $4, claim_token = NULL, last_error = $5, status = $6
		WHERE tenant = $1 AND id = $2 AND claim_token = $3::uuid AND status = 'pending'`,
		d.tenant, d.id, d.token, retry, truncateRunes(cause.Error(), 1000), status)
	if err != nil {
		s.log.ErrorContext(ctx, "release digest", "digest_id", d.id, "error", err)
	}
}

// digestItems returns the window's notifications — unread, changed after
// the window's start — and the user's inbox sequence they were read at,
// the window's end: one statement, one snapshot, and one user's changes
// commit in sequence order, so everything up to upto is there.
func digestItems(ctx context.Context, pool *pgxpool.Pool, d digest) ([]Notification, int64, error) {
	rows, err := pool.Query(ctx, `SELECT i.seq, n.id, n.group_type, n.group_id, n.unread_count, n.last_event, n.read_at, n.updated_at
		FROM notify.inboxes i
		LEFT JOIN LATERAL (
			SELECT * FROM notify.notifications n
			WHERE n.tenant = i.tenant AND n.user_id = i.user_id AND n.read_at IS NULL AND n.change_seq > $3 AND n.change_seq <= i.seq
			ORDER BY n.updated_at DESC, n.id DESC LIMIT 100) n ON true
		WHERE i.tenant = $1 AND i.user_id = $2`, d.tenant, d.userID, d.afterSeq)
	if err != nil {
		return nil, 0, fmt.Errorf("load digest notifications: %w", err)
	}
	defer rows.Close()
	upto := d.afterSeq
	var out []Notification
	for rows.Next() {
		var n Notification
		var id *int64
		var gt, gi *string
		var count *int
		var updated *time.Time
		if err := rows.Scan(&upto, &id, &gt, &gi, &count, &n.LastEvent, &n.ReadAt, &updated); err != nil {
			return nil, 0, fmt.Errorf("load digest notifications: %w", err)
		}
		if id == nil {
			continue // an inbox with nothing unread in the window
		}
		n.ID, n.Group, n.UnreadCount, n.UpdatedAt = strconv.FormatInt(*id, 10), events.Ref{Type: *gt, ID: *gi}, *count, *updated
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("load digest notifications: %w", err)
	}
	return out, upto, nil
}

// sortItems orders a digest's notifications by group type, then newest.
func sortItems(items []Notification) {
	slices.SortStableFunc(items, func(a, b Notification) int {
		return cmp.Or(strings.Compare(a.Group.Type, b.Group.Type), b.UpdatedAt.Compare(a.UpdatedAt))
	})
}

func truncateRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	b := bytes.Runes([]byte(s))
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}
