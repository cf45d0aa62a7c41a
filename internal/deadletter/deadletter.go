// Package deadletter keeps the stream messages a consumer could not process
// — undecodable, invalid, or refused by the database — with the reason, so
// that they never block the messages behind them and an operator can
// inspect and replay them (`eventline dlq list|replay`).
//
// A message that failed validation is also a rejection: recorded once
// whichever consumers reject it, with its tenant (the subject's) and field
// errors, for the tenant to see (GET /v1/rejected-events, docs/rejections.md)
// and for an operator to replay (`eventline rejected replay`).
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/eventline/eventline/pkg/events"
)

// Letter is one dead-lettered message.
type Letter struct {
	Consumer  string `json:"consumer"`
	StreamSeq uint64 `json:"stream_seq"`
	Subject   string `json:"subject"`
	Data      []byte `json:"data"`
	// StreamTime is when the stream stored the message (zero for letters
	// kept before it was recorded): consumers derive recorded_at from it.
	StreamTime time.Time `json:"stream_time,omitzero"`
	// MsgID is the message's Nats-Msg-Id header ("" when it had none;
	// several values are joined by newlines).
	MsgID string `json:"msg_id,omitempty"`
	Error string `json:"error"`
	// Errors are the field errors of a message that failed validation
	// (FieldErrors of its cause): Add then also records the message as a
	// rejection its tenant sees (Rejection). Nil for any other failure.
	Errors     []events.FieldError `json:"errors,omitempty"`
	Failures   int                 `json:"failures"`
	FailedAt   time.Time           `json:"failed_at"`
	ReplayedAt *time.Time          `json:"replayed_at,omitempty"`
}

// Execer is what Add needs: a pool, a connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Add records a letter, or updates the error of one already recorded for the
// same consumer and sequence. Call it inside the transaction that commits
// the rest of the batch so the message is acked only once it is kept.
//
// A letter with field Errors is a rejection too: the same statement records
// it once per stream sequence in eventline.rejected_events (the first
// consumer to reject the message inserts it, the others find it there) and
// sets it pending again if it had been replayed. A letter without a stream
// time (kept before stream times were recorded) is not recorded as a
// rejection.
//
// The subject, Nats-Msg-Id and error are kept as text, with bytes that are
// not UTF-8 and NUL replaced by U+FFFD (see storable); the body is kept
// exactly.
func Add(ctx context.Context, db Execer, l Letter) error {
	_, err := Record(ctx, db, l)
	return err
}

// Record is Add, and reports whether the letter is new: the consumer's
// first failure of the message, not a redelivery or a failed replay of a
// message it dead-lettered before. A consumer counts rejections by it.
func Record(ctx context.Context, db Execer, l Letter) (first bool, err error) {
	l.Subject, l.MsgID, l.Error = storable(l.Subject), storable(l.MsgID), storable(l.Error)
	if l.Data == nil {
		l.Data = []byte{} // an empty body, not NULL (which the table refuses)
	}
	var streamTime *time.Time
	if !l.StreamTime.IsZero() {
		streamTime = &l.StreamTime
	}
	r, err := rejectionOf(l)
	if err != nil {
		return false, fmt.Errorf("record dead letter %s/%d: %w", l.Consumer, l.StreamSeq, err)
	}
	err = db.QueryRow(ctx, `WITH letter AS (
		INSERT INTO eventline.dead_letters (consumer, stream_seq, subject, data, error, stream_time, msg_id)
		VALUES ($1, $2, $3, $4, $5, $6, NULLIF($7, ''))
		ON CONFLICT (consumer, stream_seq) DO UPDATE
		SET error = excluded.error, failures = dead_letters.failures + 1, failed_at = now(), replayed_at = NULL,
		    stream_time = COALESCE(excluded.stream_time, dead_letters.stream_time), msg_id = COALESCE(excluded.msg_id, dead_letters.msg_id)
		RETURNING failures = 1 AS first
	), rejection AS (
		`+recordRejectionSQL+`
	)
	SELECT first FROM letter`,
		l.Consumer, int64(l.StreamSeq), l.Subject, l.Data, l.Error, streamTime, l.MsgID,
		r.tenant, r.eventID, r.errors, r.body, r.bodySize).Scan(&first)
	if err != nil {
		return false, fmt.Errorf("record dead letter %s/%d: %w", l.Consumer, l.StreamSeq, err)
	}
	return first, nil
}

// storable returns s as a Postgres text column can hold it: bytes that are
// not UTF-8, and NUL, become U+FFFD. A subject or header comes from the
// producer unchecked (NATS stores a subject holding 0xff or NUL), and a
// field error names a JSON key as sent (a key "a\u0000" decodes to a NUL):
// a letter Postgres refused was never written and its message was retried
// forever. Such a message is invalid whatever the replacement, so a replay
// of the letter rejects it again.
func storable(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// Store lists and resolves letters.
type Store struct{ pool *pgxpool.Pool }

// NewStore returns a Store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// ListParams filters List. Zero values list every pending letter.
type ListParams struct {
	Consumer        string // "" for all consumers
	IncludeReplayed bool
	Limit           int // default 100
}

// List returns letters, oldest failure first.
func (s *Store) List(ctx context.Context, p ListParams) ([]Letter, error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT consumer, stream_seq, subject, data, error, failures, failed_at, replayed_at, stream_time, COALESCE(msg_id, '')
		FROM eventline.dead_letters
		WHERE ($1 = '' OR consumer = $1) AND ($2 OR replayed_at IS NULL)
		ORDER BY failed_at, consumer, stream_seq LIMIT $3`, p.Consumer, p.IncludeReplayed, p.Limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return pgx.CollectRows(rows, scanLetter)
}

// Get returns one letter.
func (s *Store) Get(ctx context.Context, consumer string, seq uint64) (Letter, error) {
	rows, err := s.pool.Query(ctx, `SELECT consumer, stream_seq, subject, data, error, failures, failed_at, replayed_at, stream_time, COALESCE(msg_id, '')
		FROM eventline.dead_letters WHERE consumer = $1 AND stream_seq = $2`, consumer, int64(seq))
	if err != nil {
		return Letter{}, fmt.Errorf("get dead letter: %w", err)
	}
	l, err := pgx.CollectExactlyOneRow(rows, scanLetter)
	if errors.Is(err, pgx.ErrNoRows) {
		return Letter{}, fmt.Errorf("no dead letter for consumer %q at stream sequence %d", consumer, seq)
	}
	return l, err
}

// MarkReplayed records that a letter was processed successfully; call it in
// the transaction that applied it. When the message is a rejection and no
// other consumer's letter of it is still pending, the rejection is marked
// replayed too.
func MarkReplayed(ctx context.Context, db Execer, consumer string, seq uint64) error {
	_, err := db.Exec(ctx, `WITH letter AS (
		UPDATE eventline.dead_letters SET replayed_at = now() WHERE consumer = $1 AND stream_seq = $2
	)
	UPDATE eventline.rejected_events SET replayed_at = now()
	WHERE stream_seq = $2 AND replayed_at IS NULL
	  AND NOT EXISTS (SELECT 1 FROM eventline.dead_letters WHERE stream_seq = $2 AND consumer <> $1 AND replayed_at IS NULL)`, consumer, int64(seq))
	if err != nil {
		return fmt.Errorf("mark dead letter replayed: %w", err)
	}
	return nil
}

func scanLetter(r pgx.CollectableRow) (Letter, error) {
	var l Letter
	var seq int64
	var streamTime *time.Time
	err := r.Scan(&l.Consumer, &seq, &l.Subject, &l.Data, &l.Error, &l.Failures, &l.FailedAt, &l.ReplayedAt, &streamTime, &l.MsgID)
	l.StreamSeq = uint64(seq)
	if streamTime != nil {
		l.StreamTime = streamTime.UTC()
	}
	return l, err
}

// Message rebuilds the stream message the letter was made of.
func (l Letter) Message() events.Message {
	m := events.Message{Subject: l.Subject, Data: l.Data, Seq: l.StreamSeq, Timestamp: l.StreamTime}
	if l.MsgID != "" {
		m.Header = nats.Header{events.HeaderMsgID: strings.Split(l.MsgID, "\n")}
	}
	return m
}

// Event decodes the letter's stored event for a replay (events.ParseStored,
// with the stream timestamp and Nats-Msg-Id kept in the letter). When it
// still cannot be decoded, the letter keeps the new error and one failure
// more (written in db), and the reason is returned as poison; err reports a
// failure to reach the database.
func Event(ctx context.Context, db Execer, l Letter) (e events.Event, poison, err error) {
	e, poison = events.ParseStored(l.Message())
	if poison != nil {
		l.Error, l.Errors = poison.Error(), FieldErrors(poison)
		return e, poison, Add(ctx, db, l)
	}
	return e, nil, nil
}
