package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/eventline/eventline/pkg/events"
)

// Permanent reports whether err says that the work itself is refused, so
// that doing it again cannot succeed: a consumer dead-letters such a
// message at once instead of retrying it. It decides by type, never by
// message text:
//
//   - a *pgconn.PgError of SQLSTATE class 22 (data exception: invalid
//     text, a number out of range), 23 (integrity constraint violation) or
//     54 (program limit exceeded: a value too large for an index) is
//     permanent; any other SQLSTATE is transient, among them 40001 and
//     40P01 (serialization failure, deadlock), 53 (insufficient resources),
//     57 (operator intervention, a cancelled statement), 08 (connection)
//     and 42 (a missing table or grant: configuration, fixed by an
//     operator while the message waits);
//   - an *events.ValidationError (the message breaks the contract) is
//     permanent;
//   - an error that declares itself with a method Permanent() bool (such
//     as *consume.PermanentError, which wraps a message that cannot be
//     decoded) is what that method says;
//   - everything else is transient: a lost connection, pgconn.SafeToRetry
//     errors, a context deadline, and JSON errors that are not wrapped as
//     permanent (a decode error of a tenant's stored settings is not the
//     message's fault).
//
// A PgError anywhere in the chain decides: a wrapper never makes a
// transient database error permanent.
func Permanent(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return permanentSQLState(pgErr.Code)
	}
	var declared interface{ Permanent() bool }
	if errors.As(err, &declared) {
		return declared.Permanent()
	}
	var invalid *events.ValidationError
	return errors.As(err, &invalid)
}

// permanentSQLState reports whether an SQLSTATE belongs to a class that
// refuses the data itself.
func permanentSQLState(code string) bool {
	if len(code) != 5 {
		return false
	}
	switch code[:2] {
	case "22", // data exception
		"23", // integrity constraint violation
		"54": // program limit exceeded
		return true
	}
	return false
}

// RefusedValue returns the Postgres error when err is Postgres refusing a
// value itself (SQLSTATE class 22, data exception: text with a NUL or
// invalid UTF-8, a number out of range): the client's input is wrong, and
// sending it again cannot help.
func RefusedValue(err error) (*pgconn.PgError, bool) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && len(pgErr.Code) == 5 && pgErr.Code[:2] == "22" {
		return pgErr, true
	}
	return nil, false
}

// Conflict reports whether err is a transaction that lost to a concurrent
// one (SQLSTATE class 40: serialization failure, deadlock detected): the
// same work, run again, normally succeeds.
func Conflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && len(pgErr.Code) == 5 && pgErr.Code[:2] == "40"
}
