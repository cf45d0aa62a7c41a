package notifier

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// permanentError marks a failure that no retry can cure: an event that
// does not decode or validate, or one the notifier cannot encode.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// markPermanent wraps err so that isPermanent reports it.
func markPermanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// isPermanent reports whether err means the data itself is refused, so the
// event is dead-lettered at once: a decode or validation failure, or
// Postgres refusing the values (SQLSTATE class 22, data exception; 23,
// integrity constraint violation; 54, program limit exceeded, e.g. a value
// too large to index). Everything else — connections, serialization
// failures and deadlocks (40), resources (53), shutdowns (57), grants and
// missing objects (42) — is transient and retried in place.
//
// It classifies by type, never by message. A helper shared by every
// consumer is on its way to internal/postgres; this one stays small so it
// can be swapped for it.
func isPermanent(err error) bool {
	var pe *permanentError
	if errors.As(err, &pe) {
		return true
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) < 2 {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", "23", "54":
		return true
	}
	return false
}
