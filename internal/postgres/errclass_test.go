package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/consume"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// TestPermanent classifies errors that real Postgres returns, and made-up
// ones for conditions a test cannot cause (a deadlock, a full disk), bare
// and wrapped.
func TestPermanent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Pool(t)
	// pgErr runs sql in a transaction that is rolled back and returns its
	// error, which must be a *pgconn.PgError with the SQLSTATE want.
	pgErr := func(want, sql string, args ...any) error {
		t.Helper()
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		_, err = tx.Exec(ctx, sql, args...)
		var pe *pgconn.PgError
		require.ErrorAs(t, err, &pe, "%s", sql)
		require.Equal(t, want, pe.Code, "%s: %v", sql, err)
		return err
	}
	_, err := pool.Exec(ctx, `CREATE TABLE errclass (id text PRIMARY KEY, n int CHECK (n > 0))`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO errclass VALUES ('taken', 1)`)
	require.NoError(t, err)

	deadline, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-deadline.Done()
	_, connErr := pgx.Connect(ctx, "postgres://127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	require.Error(t, connErr)
	closed, err := pgx.Connect(ctx, testenv.Database(t))
	require.NoError(t, err)
	require.NoError(t, closed.Close(ctx))
	_, closedErr := closed.Exec(ctx, `SELECT 1`)
	require.Error(t, closedErr)
	var decoded map[string]any
	syntaxErr := json.Unmarshal([]byte(`{"n":`), &decoded)
	require.Error(t, syntaxErr)

	for _, tc := range []struct {
		name      string
		err       error
		permanent bool
	}{
		// Class 22, data exception: the value itself is refused.
		{"22P02 invalid text for int", pgErr("22P02", `SELECT 'x'::int`), true},
		{"22003 number beyond numeric in jsonb", pgErr("22003", `SELECT $1::text::jsonb`, `{"n":1e999999}`), true},
		{"22021 NUL in text", pgErr("22021", `SELECT $1::text`, "a\x00b"), true},
		{"22P05 \\u0000 in jsonb", pgErr("22P05", `SELECT $1::text::jsonb`, `"\u0000"`), true},
		{"22023 raised by a trigger", pgErr("22023", `DO $$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = 'invalid_parameter_value'; END $$`), true},
		// Class 23, integrity constraint violation.
		{"23505 unique violation", pgErr("23505", `INSERT INTO errclass VALUES ('taken', 1)`), true},
		{"23514 check violation", pgErr("23514", `INSERT INTO errclass VALUES ('new', 0)`), true},
		{"23502 not null violation", pgErr("23502", `INSERT INTO errclass VALUES (NULL, 1)`), true},
		// Class 54, program limit exceeded: a key too large for a btree.
		{"54000 index row too large", pgErr("54000", `INSERT INTO errclass SELECT string_agg(md5(random()::text), '') , 1 FROM generate_series(1, 500)`), true},
		// Configuration and availability: transient.
		{"42P01 undefined table", pgErr("42P01", `SELECT * FROM no_such_table`), false},
		{"42501 missing grant", pgErr("42501", `SET LOCAL ROLE eventline_app; INSERT INTO timeline_g1.events (tenant, id, seq, type, action, eventable_type, eventable_id,
			creator_type, creator_id, parents, particulars, occurred_at, recorded_at)
			VALUES ('t', 'e', 1, 'card.closed', 'closed', 'card', 'c', 'user', 'u', '[]', '{}', now(), now())`), false},
		{"57014 statement timeout", pgErr("57014", `SET LOCAL statement_timeout = 10; SELECT pg_sleep(1)`), false},
		{"40001 serialization failure", &pgconn.PgError{Code: "40001"}, false},
		{"40P01 deadlock", &pgconn.PgError{Code: "40P01"}, false},
		{"53100 disk full", &pgconn.PgError{Code: "53100"}, false},
		{"53300 too many connections", &pgconn.PgError{Code: "53300"}, false},
		{"08006 connection failure", &pgconn.PgError{Code: "08006"}, false},
		{"57P01 admin shutdown", &pgconn.PgError{Code: "57P01"}, false},
		{"XX000 internal error", &pgconn.PgError{Code: "XX000"}, false},
		{"malformed SQLSTATE", &pgconn.PgError{Code: "2"}, false},
		{"connection refused", connErr, false},
		{"closed connection (SafeToRetry)", closedErr, false},
		{"context deadline", fmt.Errorf("insert: %w", deadline.Err()), false},
		{"context canceled", context.Canceled, false},
		// Decode and validation.
		{"validation error", &events.ValidationError{Errors: []events.FieldError{{Field: "id", Message: "is required"}}}, true},
		{"undecodable message", consume.Permanent(syntaxErr), true},
		{"JSON error not marked permanent", syntaxErr, false},
		{"plain error", errors.New("something broke"), false},
		{"nil", nil, false},
		// A transient database error stays transient inside a permanent wrapper.
		{"permanent wrapper around 40001", consume.Permanent(&pgconn.PgError{Code: "40001"}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.permanent, postgres.Permanent(tc.err), "%v", tc.err)
			if tc.err == nil {
				return
			}
			for _, wrapped := range []error{
				fmt.Errorf("insert 3 events into timeline_g1: %w", tc.err),
				fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", tc.err)),
				errors.Join(errors.New("rollback failed too"), tc.err),
			} {
				require.Equal(t, tc.permanent, postgres.Permanent(wrapped), "%v", wrapped)
			}
		})
	}
	require.True(t, pgconn.SafeToRetry(closedErr), "the closed connection's error is one pgx calls safe to retry")
}

func TestRefusedValue(t *testing.T) {
	t.Parallel()
	pe, ok := postgres.RefusedValue(fmt.Errorf("insert endpoint: %w", &pgconn.PgError{Code: "22021", Message: `invalid byte sequence for encoding "UTF8": 0x00`}))
	require.True(t, ok)
	require.True(t, strings.HasPrefix(pe.Message, "invalid byte sequence"))
	for _, err := range []error{&pgconn.PgError{Code: "23505"}, &pgconn.PgError{Code: "08006"}, errors.New("x"), nil} {
		_, ok := postgres.RefusedValue(err)
		require.False(t, ok, "%v", err)
	}
}

func TestConflict(t *testing.T) {
	t.Parallel()
	for _, err := range []error{&pgconn.PgError{Code: "40P01"}, fmt.Errorf("log attempts: %w", &pgconn.PgError{Code: "40001"})} {
		require.True(t, postgres.Conflict(err), "%v", err)
	}
	for _, err := range []error{&pgconn.PgError{Code: "23505"}, &pgconn.PgError{Code: "08006"}, errors.New("deadlock detected"), nil} {
		require.False(t, postgres.Conflict(err), "%v", err)
	}
}
