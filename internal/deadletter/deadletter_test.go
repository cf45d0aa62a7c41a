package deadletter_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestAddKeepsWhatPostgresCannotStore: NATS stores a subject with a 0xff or
// NUL byte, a header may hold one, and a field error names a JSON key as
// sent ("a\u0000" decodes to a NUL). The letter is still written (those
// bytes become U+FFFD in its text columns; the body is kept as is): a
// letter Postgres refused was never written, and its message was retried
// forever, holding up the projector.
func TestAddKeepsWhatPostgresCannotStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Pool(t)
	body := []byte("{\"a\\u0000\":1,\"b\":\"\xff\"}")
	l := deadletter.Letter{Consumer: "projector", StreamSeq: 1, Subject: "events.acme.card.\xff\x00", Data: body,
		MsgID: "acme:\x00\xfe", Error: "event 0: a\x00: is not a field of an event; remove it"}
	require.NoError(t, deadletter.Add(ctx, pool, l))
	got, err := deadletter.NewStore(pool).Get(ctx, "projector", 1)
	require.NoError(t, err)
	require.Equal(t, "events.acme.card.\uFFFD\uFFFD", got.Subject)
	require.Equal(t, "acme:\uFFFD\uFFFD", got.MsgID)
	require.Equal(t, "event 0: a\uFFFD: is not a field of an event; remove it", got.Error)
	require.Equal(t, body, got.Data, "the body is bytes and kept exactly")

	// An empty body a client handed over as nil is kept empty, not NULL.
	empty := rejected("projector", 2, "events.acme.card.closed", "", time.Now(), events.FieldError{Field: "event", Message: "must be a JSON object"})
	empty.Data = nil
	require.NoError(t, deadletter.Add(ctx, pool, empty))
}

// rejected is the letter consumer leaves for a message at seq that failed
// validation.
func rejected(consumer string, seq uint64, subject, body string, at time.Time, errs ...events.FieldError) deadletter.Letter {
	verr := &events.ValidationError{Errors: errs}
	return deadletter.Letter{Consumer: consumer, StreamSeq: seq, Subject: subject, Data: []byte(body), StreamTime: at,
		Error: verr.Error(), Errors: deadletter.FieldErrors(fmt.Errorf("wrapped: %w", verr))}
}

func list(t *testing.T, pool *pgxpool.Pool, q deadletter.RejectionQuery) []uint64 {
	t.Helper()
	if q.Limit == 0 {
		q.Limit = 100
	}
	rs, err := deadletter.ListRejections(context.Background(), pool, q)
	require.NoError(t, err)
	seqs := []uint64{}
	for _, r := range rs {
		require.Equal(t, q.Tenant, r.Tenant)
		seqs = append(seqs, r.Seq)
	}
	return seqs
}

// TestRejectionRecordedOnce: every consumer dead-letters the same invalid
// message; it is one rejection, with the subject's tenant, the body's id,
// the field errors exactly as given (a key holding NUL included: the
// column is json, which keeps "\u0000") and the start of the body. A
// letter that is not a validation failure is no rejection, and one on a
// subject without a tenant is kept for operators only.
func TestRejectionRecordedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Pool(t)
	at := time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC)
	errs := []events.FieldError{{Field: "a\x00", Message: "is not a field of an event; remove it"}, {Field: "action", Message: "is required"}}
	body := `{"id":"e-1","a\u0000":1,"eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"},"particulars":{"pad":"` + strings.Repeat("x", 5000) + `"}}`
	for _, c := range []string{"projector", "notifier", "webhooker"} {
		require.NoError(t, deadletter.Add(ctx, pool, rejected(c, 7, "events.acme.card.closed", body, at, errs...)))
	}
	require.NoError(t, deadletter.Add(ctx, pool, deadletter.Letter{Consumer: "projector", StreamSeq: 8, Subject: "events.acme.card.closed",
		Data: []byte(`{}`), StreamTime: at, Error: "refused by the database: ERROR: value too long (SQLSTATE 22001)"}))
	require.NoError(t, deadletter.Add(ctx, pool, rejected("projector", 9, "events", `{}`, at, events.FieldError{Field: "subject", Message: "is \"events\""})))
	require.NoError(t, deadletter.Add(ctx, pool, rejected("projector", 10, "events.Acme.card.closed", `{}`, at, events.FieldError{Field: "subject", Message: "bad"})))

	rs, err := deadletter.ListRejections(ctx, pool, deadletter.RejectionQuery{Tenant: "acme", Limit: 10})
	require.NoError(t, err)
	require.Len(t, rs, 1, "three consumers, one rejection; a database refusal is none")
	r := rs[0]
	require.Equal(t, uint64(7), r.Seq)
	require.Equal(t, "events.acme.card.closed", r.Subject)
	require.Equal(t, "e-1", *r.ID)
	require.Equal(t, errs, r.Errors)
	require.Equal(t, at, r.StreamTime)
	require.WithinDuration(t, time.Now(), r.RejectedAt, time.Minute)
	require.Nil(t, r.ReplayedAt)
	require.Equal(t, []byte(body[:deadletter.MaxRejectedBody]), r.Body)
	require.Equal(t, len(body), r.BodySize)
	var raw string
	require.NoError(t, pool.QueryRow(ctx, `SELECT errors::text FROM eventline.rejected_events WHERE stream_seq = 7`).Scan(&raw))
	require.Contains(t, raw, `"field":"a\u0000"`)

	all, err := deadletter.NewStore(pool).Rejections(ctx, deadletter.RejectionsParams{})
	require.NoError(t, err)
	require.Len(t, all, 3, "operators see the tenant-less ones too")
	require.Equal(t, []string{"acme", "", ""}, []string{all[0].Tenant, all[1].Tenant, all[2].Tenant})
	require.Nil(t, all[1].ID, "no id in the body")
}

// TestRejectionPages: newest first by stream time then sequence, keyset
// pages, since, and only the tenant's own under row-level security.
func TestRejectionPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Pool(t)
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for seq := uint64(1); seq <= 10; seq++ {
		tenant := []string{"acme", "globex"}[seq%2]
		// Pairs share a stream time: the sequence breaks the tie.
		at := base.Add(time.Duration((seq+1)/2) * time.Second)
		require.NoError(t, deadletter.Add(ctx, pool, rejected("projector", seq, "events."+tenant+".card.closed", `{}`, at, events.FieldError{Field: "action", Message: "is required"})))
	}
	// A row the owner writes for acme but a policy hides from the app role:
	// the listing runs under row-level security.
	_, err := pool.Exec(ctx, `CREATE POLICY probe ON eventline.rejected_events AS RESTRICTIVE TO eventline_app USING (stream_seq <> 9)`)
	require.NoError(t, err)
	require.Equal(t, []uint64{7, 5, 3, 1}, list(t, pool, deadletter.RejectionQuery{Tenant: "globex"}))
	require.Equal(t, []uint64{10, 8, 6, 4, 2}, list(t, pool, deadletter.RejectionQuery{Tenant: "acme"}))
	require.Equal(t, []uint64{6, 4}, list(t, pool, deadletter.RejectionQuery{Tenant: "acme", Limit: 2,
		Before: &deadletter.Position{StreamTime: base.Add(4 * time.Second), Seq: 8}}))
	require.Equal(t, []uint64{10, 8, 6}, list(t, pool, deadletter.RejectionQuery{Tenant: "acme", Since: base.Add(3 * time.Second)}))
	require.Empty(t, list(t, pool, deadletter.RejectionQuery{Tenant: "initech"}))
}

// TestRejectionReplayed: a rejection is replayed once every consumer's
// letter of it is, and a consumer that rejects it again makes it pending
// again; replayed ones are listed only on request.
func TestRejectionReplayed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Pool(t)
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	fe := events.FieldError{Field: "action", Message: "is required"}
	for _, c := range []string{"projector", "notifier"} {
		require.NoError(t, deadletter.Add(ctx, pool, rejected(c, 3, "events.acme.card.closed", `{}`, at, fe)))
	}
	acme := deadletter.RejectionQuery{Tenant: "acme"}
	withReplayed := deadletter.RejectionQuery{Tenant: "acme", IncludeReplayed: true}
	require.NoError(t, deadletter.MarkReplayed(ctx, pool, "projector", 3))
	require.Equal(t, []uint64{3}, list(t, pool, acme), "the notifier's letter is still pending")
	require.NoError(t, deadletter.MarkReplayed(ctx, pool, "notifier", 3))
	require.Empty(t, list(t, pool, acme), "every letter replayed")
	require.Equal(t, []uint64{3}, list(t, pool, withReplayed))
	rs, err := deadletter.ListRejections(ctx, pool, withReplayed)
	require.NoError(t, err)
	require.NotNil(t, rs[0].ReplayedAt)

	require.NoError(t, deadletter.Add(ctx, pool, rejected("webhooker", 3, "events.acme.card.closed", `{}`, at, fe)))
	require.Equal(t, []uint64{3}, list(t, pool, acme), "a consumer rejected it again")
	marked, err := deadletter.MarkRejectionReplayed(ctx, pool, 3)
	require.NoError(t, err)
	require.False(t, marked, "the webhooker's letter is pending")

	// The stream was recreated and seq 3 is another message now.
	later := at.Add(time.Hour)
	require.NoError(t, deadletter.Add(ctx, pool, rejected("projector", 3, "events.globex.card.closed", `{"id":"g"}`, later, fe)))
	require.Empty(t, list(t, pool, acme))
	require.Equal(t, []uint64{3}, list(t, pool, deadletter.RejectionQuery{Tenant: "globex"}))
}

func TestReason(t *testing.T) {
	t.Parallel()
	for field, want := range map[string]string{
		"event": "body", "id": "id", "tenant": "tenant", "action": "action", "eventable.type": "eventable", "creator.x": "creator",
		"parents[3].id": "parents", "parents": "parents", `particulars["a b"].c`: "particulars", "particulars.items[3].n": "particulars",
		"occurred_at": "occurred_at", "subject": "subject", "Nats-Msg-Id": "Nats-Msg-Id", "type": "system_field", "recorded_at": "system_field",
		"seq": "system_field", "board_id": "unknown_field", `""`: "unknown_field", "a\x00": "unknown_field", `["a\u0000"]`: "unknown_field", "events": "unknown_field",
	} {
		require.Equal(t, want, deadletter.Reason([]events.FieldError{{Field: field}, {Field: "action"}}), field)
	}
	require.Equal(t, "other", deadletter.Reason(nil))
}
