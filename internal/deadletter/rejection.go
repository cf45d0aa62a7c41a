package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/pkg/events"
)

// MaxRejectedBody is how much of a rejected message's body is kept with the
// rejection (the whole body stays in the consumers' dead letters).
const MaxRejectedBody = 4096

// Rejection is a message on the EVENTS stream that failed validation, as its
// tenant sees it. Its JSON is the item of GET /v1/rejected-events.
type Rejection struct {
	Seq uint64 `json:"seq"`
	// Tenant is the subject's second token; "" when the subject has none
	// (only operators see such a rejection).
	Tenant  string `json:"-"`
	Subject string `json:"subject"`
	// ID is the body's event id, nil when it has no valid one.
	ID *string `json:"id"`
	// Errors are every problem, as POST /v1/events names them for the same
	// body, plus "subject" and "Nats-Msg-Id" (events.ParseStored).
	Errors     []events.FieldError `json:"errors"`
	StreamTime time.Time           `json:"stream_time"`
	RejectedAt time.Time           `json:"rejected_at"`
	ReplayedAt *time.Time          `json:"replayed_at"`
	// Body is the start of the body as published, at most MaxRejectedBody
	// bytes (base64 in JSON); BodySize is its whole size.
	Body     []byte `json:"body_base64"`
	BodySize int    `json:"body_size"`
}

// FieldErrors returns the field errors of err when it is (or wraps) an
// *events.ValidationError: the message failed validation and is a
// rejection. Nil otherwise.
func FieldErrors(err error) []events.FieldError {
	var verr *events.ValidationError
	if errors.As(err, &verr) {
		return verr.Errors
	}
	return nil
}

// SubjectTenant returns the tenant of an event subject: its second token,
// when the subject is events.<tenant>[.…] and the token is a valid tenant.
// NATS permissions confine a producer to its tenant's subjects, so the
// token can be trusted even when the rest of the subject is wrong.
func SubjectTenant(subject string) string {
	rest, ok := strings.CutPrefix(subject, events.SubjectPrefix+".")
	if !ok {
		return ""
	}
	tenant, _, _ := strings.Cut(rest, ".")
	if !events.IsTenant(tenant) {
		return ""
	}
	return tenant
}

// rejection holds the arguments of recordRejectionSQL; all nil when the
// letter is not a rejection.
type rejection struct {
	tenant, eventID, errors *string
	body                    []byte
	bodySize                int
}

// rejectionOf returns what Add records of l as a rejection. Everything in
// it is storable: the tenant and id are checked tokens, the errors JSON
// (type json keeps a "\u0000" escape; invalid UTF-8 was replaced when it
// was encoded).
func rejectionOf(l Letter) (rejection, error) {
	if l.Errors == nil || l.StreamTime.IsZero() {
		return rejection{}, nil
	}
	errs, err := json.Marshal(l.Errors)
	if err != nil {
		return rejection{}, fmt.Errorf("encode field errors: %w", err)
	}
	r := rejection{errors: ptr(string(errs)), body: l.Data[:min(len(l.Data), MaxRejectedBody)], bodySize: len(l.Data)}
	if t := SubjectTenant(l.Subject); t != "" {
		r.tenant = ptr(t)
	}
	if id := bodyID(l.Data); id != "" {
		r.eventID = ptr(id)
	}
	return r, nil
}

func ptr[T any](v T) *T { return &v }

// bodyID returns the "id" of a body when it is a valid event id
// (^[A-Za-z0-9_-]{1,64}$), else "".
func bodyID(data []byte) string {
	var b struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(data, &b) != nil || len(b.ID) == 0 || len(b.ID) > events.MaxIDLen {
		return ""
	}
	for _, c := range []byte(b.ID) {
		if !idByte(c) {
			return ""
		}
	}
	return b.ID
}

func idByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// recordRejectionSQL follows the dead letter's CTE in Add: $2 sequence, $3
// subject, $6 stream time, $8 tenant, $9 event id, $10 errors, $11 body
// start, $12 body size. Every consumer reads the same message and rejects
// it the same way, so the first inserts the row and the others update it
// to the same values (a consumer of a newer version may word the errors
// anew); a row for the same sequence but another stream time belongs to a
// message of a stream that was since recreated, and is replaced.
const recordRejectionSQL = `INSERT INTO eventline.rejected_events AS r (stream_seq, tenant, subject, event_id, errors, body, body_size, stream_time)
	SELECT $2, $8, $3, $9, $10::json, $11, $12, $6 WHERE $10::json IS NOT NULL AND $6::timestamptz IS NOT NULL
	ON CONFLICT (stream_seq) DO UPDATE
	SET tenant = excluded.tenant, subject = excluded.subject, event_id = excluded.event_id, errors = excluded.errors,
	    body = excluded.body, body_size = excluded.body_size, replayed_at = NULL,
	    rejected_at = CASE WHEN r.stream_time = excluded.stream_time THEN r.rejected_at ELSE now() END,
	    stream_time = excluded.stream_time`

// RejectionQuery selects a page of one tenant's rejections, newest first
// (by stream time, then sequence).
type RejectionQuery struct {
	Tenant string
	// Since, when set, keeps those stored by the stream at or after it.
	Since time.Time
	// IncludeReplayed lists replayed rejections too (with ReplayedAt).
	IncludeReplayed bool
	// Before, when set, is the keyset position to continue from: the
	// stream time and sequence of the last rejection of the previous page.
	Before *Position
	// Limit is how many are returned at most.
	Limit int
}

// Position is a place in the newest-first order of rejections.
type Position struct {
	StreamTime time.Time
	Seq        uint64
}

const rejectionColumns = `stream_seq, COALESCE(tenant, ''), subject, event_id, errors, stream_time, rejected_at, replayed_at, body, body_size`

// ListRejections returns a page of q.Tenant's rejections. It runs as the
// application role confined to the tenant by row-level security
// (postgres.TenantBatch), on top of the query's own tenant filter.
func ListRejections(ctx context.Context, pool *pgxpool.Pool, q RejectionQuery) ([]Rejection, error) {
	where := []string{"tenant = $1"}
	args := []any{q.Tenant}
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if !q.IncludeReplayed {
		where = append(where, "replayed_at IS NULL")
	}
	if !q.Since.IsZero() {
		where = append(where, "stream_time >= "+arg(q.Since))
	}
	if q.Before != nil {
		where = append(where, fmt.Sprintf("(stream_time, stream_seq) < (%s, %s)", arg(q.Before.StreamTime), arg(int64(q.Before.Seq))))
	}
	var b pgx.Batch
	b.Queue(fmt.Sprintf(`SELECT %s FROM eventline.rejected_events WHERE %s ORDER BY stream_time DESC, stream_seq DESC LIMIT %d`,
		rejectionColumns, strings.Join(where, " AND "), max(q.Limit, 1)), args...)
	var out []Rejection
	err := postgres.TenantBatch(ctx, pool, q.Tenant, pgx.TxOptions{AccessMode: pgx.ReadOnly}, &b, func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanRejection)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list rejected events: %w", err)
	}
	return out, nil
}

// Rejections lists rejections for operators, across tenants.
func (s *Store) Rejections(ctx context.Context, p RejectionsParams) ([]Rejection, error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT `+rejectionColumns+` FROM eventline.rejected_events
		WHERE ($1 = '' OR tenant = $1) AND ($2 OR replayed_at IS NULL) AND (COALESCE(cardinality($3::bigint[]), 0) = 0 OR stream_seq = ANY($3))
		ORDER BY stream_seq LIMIT $4`, p.Tenant, p.IncludeReplayed, p.Seqs, p.Limit)
	if err != nil {
		return nil, fmt.Errorf("list rejected events: %w", err)
	}
	return pgx.CollectRows(rows, scanRejection)
}

// RejectionsParams filters Store.Rejections. Zero values list every pending
// rejection, oldest first.
type RejectionsParams struct {
	Tenant          string  // "" for every tenant (and those with none)
	Seqs            []int64 // only these stream sequences, replayed or not
	IncludeReplayed bool
	Limit           int // default 100
}

// LettersOf returns every consumer's letter of one stream message, pending
// ones only unless includeReplayed.
func (s *Store) LettersOf(ctx context.Context, seq uint64, includeReplayed bool) ([]Letter, error) {
	rows, err := s.pool.Query(ctx, `SELECT consumer, stream_seq, subject, data, error, failures, failed_at, replayed_at, stream_time, COALESCE(msg_id, '')
		FROM eventline.dead_letters WHERE stream_seq = $1 AND ($2 OR replayed_at IS NULL) ORDER BY consumer`, int64(seq), includeReplayed)
	if err != nil {
		return nil, fmt.Errorf("list dead letters of %d: %w", seq, err)
	}
	return pgx.CollectRows(rows, scanLetter)
}

// MarkRejectionReplayed marks a rejection replayed once none of its letters
// is pending: the consumers that rejected it have all processed it. It
// reports whether it was marked.
func MarkRejectionReplayed(ctx context.Context, db Execer, seq uint64) (bool, error) {
	tag, err := db.Exec(ctx, `UPDATE eventline.rejected_events SET replayed_at = now()
		WHERE stream_seq = $1 AND replayed_at IS NULL
		  AND NOT EXISTS (SELECT 1 FROM eventline.dead_letters WHERE stream_seq = $1 AND replayed_at IS NULL)`, int64(seq))
	if err != nil {
		return false, fmt.Errorf("mark rejection %d replayed: %w", seq, err)
	}
	return tag.RowsAffected() == 1, nil
}

func scanRejection(row pgx.CollectableRow) (Rejection, error) {
	var r Rejection
	var seq int64
	var errs []byte
	if err := row.Scan(&seq, &r.Tenant, &r.Subject, &r.ID, &errs, &r.StreamTime, &r.RejectedAt, &r.ReplayedAt, &r.Body, &r.BodySize); err != nil {
		return r, err
	}
	r.Seq = uint64(seq)
	r.StreamTime, r.RejectedAt = r.StreamTime.UTC(), r.RejectedAt.UTC()
	if r.ReplayedAt != nil {
		t := r.ReplayedAt.UTC()
		r.ReplayedAt = &t
	}
	if err := json.Unmarshal(errs, &r.Errors); err != nil {
		return r, fmt.Errorf("decode field errors of rejection %d: %w", seq, err)
	}
	return r, nil
}

// reasonFields are the top-level fields a rejection reason names as they
// are; see Reason.
var reasonFields = map[string]bool{"id": true, "tenant": true, "action": true, "eventable": true, "creator": true, "parents": true,
	"particulars": true, "occurred_at": true, "subject": true, events.HeaderMsgID: true}

// Reason sums up why a message was rejected in one of a small, fixed set of
// words, for a metric label: the top-level field of its first error (id,
// tenant, action, eventable, creator, parents, particulars, occurred_at,
// subject, Nats-Msg-Id); "body" when the body as a whole is wrong (not a
// JSON object, invalid UTF-8 outside a field, nested too deep);
// "system_field" for recorded_at, type or seq sent or wrong;
// "unknown_field" for any other top-level name (a field that is not one of
// an event, or a key that cannot be stored, named as `["a\u0000"]`);
// "other" when there is no error at all.
func Reason(errs []events.FieldError) string {
	if len(errs) == 0 {
		return "other"
	}
	f := errs[0].Field
	if i := strings.IndexAny(f, ".["); i >= 0 {
		f = f[:i]
	}
	switch {
	case reasonFields[f]:
		return f
	case f == "event":
		return "body"
	case f == "recorded_at" || f == "type" || f == "seq":
		return "system_field"
	default:
		return "unknown_field"
	}
}
