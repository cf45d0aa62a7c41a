package projector

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// FuzzAcceptedIsStorable: any event ingest validation accepts, as a
// consumer reads it back from the stream, inserts cleanly into the real
// projector tables through the projector's own insert, and its ids and
// times come back unchanged. Each insert is rolled back.
func FuzzAcceptedIsStorable(f *testing.F) {
	pool := testenv.Pool(f)
	testenv.FuzzAccepted(f, func(t *testing.T, e events.Event, body []byte) {
		ctx := context.Background()
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			n, err := insertEvents(ctx, tx, 1, []events.Event{e})
			if err != nil {
				return err
			}
			if n != 1 {
				t.Fatalf("stored %d events", n)
			}
			var got events.Event
			var parent string
			err = tx.QueryRow(ctx, `SELECT id, eventable_id, creator_id, COALESCE(parents->0->>'id', ''), occurred_at, recorded_at FROM timeline_g1.events WHERE tenant = 'acme' AND id = $1`, e.ID).
				Scan(&got.ID, &got.Eventable.ID, &got.Creator.ID, &parent, &got.OccurredAt, &got.RecordedAt)
			if err != nil {
				return err
			}
			if len(e.Parents) > 0 && parent != e.Parents[0].ID {
				t.Fatalf("parent stored as %q, not %q", parent, e.Parents[0].ID)
			}
			if got.ID != e.ID || got.Eventable.ID != e.Eventable.ID || got.Creator.ID != e.Creator.ID ||
				!got.OccurredAt.Equal(e.OccurredAt) || !got.RecordedAt.Equal(e.RecordedAt) {
				t.Fatalf("stored differently: %+v, not %+v", got, e)
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatalf("ingest accepts %q but the projector cannot store it: %v", body, err)
		}
	})
}

var errRollback = errors.New("rollback")

// TestNumberLimitsMatchPostgres: events.CheckStorable refuses exactly the
// JSON numbers PostgreSQL's jsonb refuses, around every limit: the largest
// weight, the largest scale (trailing zeros count, zero too) and the
// exponent cut-off.
func TestNumberLimitsMatchPostgres(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	ctx := context.Background()
	mantissas := []string{"0", "-0", "1", "-1", "9.99", "10", "100", "0.001", "1.000", "123.456", "0.0", "5", "0.05"}
	var exponents []int
	for _, center := range []int{0, 131071, -16383, 1073741822, -1073741822, 131071 + 16383} {
		for d := -4; d <= 4; d++ {
			exponents = append(exponents, center+d)
		}
	}
	var numbers []string
	for _, m := range mantissas {
		numbers = append(numbers, m)
		for _, x := range exponents {
			numbers = append(numbers, fmt.Sprintf("%se%d", m, x))
		}
	}
	numbers = append(numbers, "0."+strings.Repeat("0", 16382)+"1", "0."+strings.Repeat("0", 16383)+"1", "1"+strings.Repeat("0", 20000), "1e99999999999999999999", "0e-99999999999999999999")
	for _, n := range numbers {
		ours := len(events.CheckStorable([]byte(n), "n")) == 0
		_, err := pool.Exec(ctx, `SELECT $1::jsonb`, n)
		var pgErr *pgconn.PgError
		if err != nil && !errors.As(err, &pgErr) {
			t.Fatal(err)
		}
		if theirs := err == nil; ours != theirs {
			t.Errorf("%.40s: eventline stores it %v, PostgreSQL %v (%v)", n, ours, theirs, err)
		}
	}
}
