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
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/postgres"
)

// Digest frequencies (CONTRACT §2 preferences).
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

// scheduleDigests opens a digest window, starting now, for every notified
// user who wants digests and has none pending. It sends batch (queued
// statements to run first, such as the NOTIFY) with its own query.
func scheduleDigests(ctx context.Context, tx pgx.Tx, batch *pgx.Batch, bumps map[groupKey]*bump, now time.Time) error {
	if len(bumps) == 0 {
		return nil // and no changes to NOTIFY
	}
	type tu struct{ tenant, user string }
	seen := map[tu]bool{}
	var tenants, users []string
	for k := range bumps {
		if !seen[tu{k.tenant, k.user}] {
			seen[tu{k.tenant, k.user}] = true
			tenants, users = append(tenants, k.tenant), append(users, k.user)
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
	for rows.Next() {
		var t, u, digest, tz string
		if err := rows.Scan(&t, &u, &digest, &tz); err != nil {
			rows.Close()
			_ = br.Close()
			return err
		}
		dt, du, ends = append(dt, t), append(du, u), append(ends, windowEnd(now, digest, loadLocation(tz)))
	}
	if err := errors.Join(rows.Err(), br.Close()); err != nil {
		return fmt.Errorf("load digest preferences: %w", err)
	}
	if len(dt) == 0 {
		return nil
	}
	_, err = tx.Exec(ctx, `INSERT INTO notify.digests (tenant, user_id, starts_at, ends_at, next_attempt_at)
		SELECT t, u, $3, e, e FROM unnest($1::text[], $2::text[], $4::timestamptz[]) AS x(t, u, e)
		ON CONFLICT DO NOTHING`, dt, du, now, ends)
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

// digest is one claimed window.
type digest struct {
	id               int64
	tenant, userID   string
	startsAt, endsAt time.Time
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
		RETURNING d.id, d.tenant, d.user_id, d.starts_at, d.ends_at, d.claim_token::text, d.attempts`,
		now, s.cfg.Batch, now.Add(s.cfg.Claim))
	if err != nil {
		return 0, fmt.Errorf("claim due digests: %w", err)
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (digest, error) {
		var d digest
		err := r.Scan(&d.id, &d.tenant, &d.userID, &d.startsAt, &d.endsAt, &d.token, &d.attempts)
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
		s.finish(ctx, d, "skipped", 0, pref)
		return
	}
	items, err := digestItems(ctx, s.pool, d)
	if err != nil {
		s.fail(ctx, d, err)
		return
	}
	if len(items) == 0 {
		s.finish(ctx, d, "skipped", 0, pref)
		return
	}
	msg, err := s.render(d, pref, items)
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
	s.finish(ctx, d, "sent", len(items), pref)
}

// finish records a digest's end (sent or skipped) and opens the next
// window when unread notifications arrived after this one ended.
func (s *digestSender) finish(ctx context.Context, d digest, status string, n int, pref Preferences) {
	err := postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE notify.digests SET status = $4, sent_at = CASE WHEN $4 = 'sent' THEN $5::timestamptz END,
				notifications = $6, claim_token = NULL, last_error = NULL
			WHERE tenant = $1 AND id = $2 AND claim_token = $3::uuid AND status = 'pending'`,
			d.tenant, d.id, d.token, status, s.now().UTC(), n)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errClaimLost
		}
		if pref.Digest == DigestNever || pref.Email == "" {
			return nil
		}
		var next *time.Time
		if err := tx.QueryRow(ctx, `SELECT min(updated_at) FROM notify.notifications
			WHERE tenant = $1 AND user_id = $2 AND read_at IS NULL AND updated_at >= $3`, d.tenant, d.userID, d.endsAt).Scan(&next); err != nil {
			return err
		}
		if next == nil {
			return nil
		}
		end := windowEnd(*next, pref.Digest, loadLocation(pref.Timezone))
		_, err = tx.Exec(ctx, `INSERT INTO notify.digests (tenant, user_id, starts_at, ends_at, next_attempt_at)
			VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING`, d.tenant, d.userID, *next, end)
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

func digestItems(ctx context.Context, pool *pgxpool.Pool, d digest) ([]Notification, error) {
	rows, err := pool.Query(ctx, `SELECT `+notificationCols+` FROM notify.notifications
		WHERE tenant = $1 AND user_id = $2 AND read_at IS NULL AND updated_at >= $3 AND updated_at < $4
		ORDER BY updated_at DESC, id DESC LIMIT 100`, d.tenant, d.userID, d.startsAt, d.endsAt)
	if err != nil {
		return nil, fmt.Errorf("load digest notifications: %w", err)
	}
	return pgx.CollectRows(rows, scanNotification)
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
