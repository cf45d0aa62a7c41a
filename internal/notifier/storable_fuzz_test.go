package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// FuzzAcceptedIsStorable: any event ingest validation accepts, as a
// consumer reads it back from the stream, is stored as an inbox's
// last_event (jsonb) by the notifier's own upsert, and reads back with the
// same id and eventable. Each upsert is rolled back.
func FuzzAcceptedIsStorable(f *testing.F) {
	pool := testenv.Pool(f)
	testenv.FuzzAccepted(f, func(t *testing.T, e events.Event, body []byte) {
		last, err := json.Marshal(e) // what the notifier stores as last_event
		if err != nil {
			t.Fatalf("encode %+v: %v", e, err)
		}
		ctx := context.Background()
		err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO notify.inboxes (tenant, user_id, seq, unread_total) VALUES ($1, 'u2', 1, 0)`, e.Tenant); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, upsertSQL, []string{e.Tenant}, []string{"u2"}, []string{e.Eventable.Type}, []string{e.Eventable.ID},
				[]int32{1}, []string{string(last)}, []int32{0}, e.RecordedAt)
			if err != nil {
				return err
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			var gotID, gotEventable, gotGroup string
			err = tx.QueryRow(ctx, `SELECT last_event->>'id', last_event->'eventable'->>'id', group_id FROM notify.notifications WHERE tenant = $1 AND user_id = 'u2'`, e.Tenant).
				Scan(&gotID, &gotEventable, &gotGroup)
			if err != nil {
				return err
			}
			if gotID != e.ID || gotEventable != e.Eventable.ID || gotGroup != e.Eventable.ID {
				t.Fatalf("stored differently: id %q eventable %q group %q, not %q %q", gotID, gotEventable, gotGroup, e.ID, e.Eventable.ID)
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatalf("ingest accepts %q but the notifier cannot store it: %v", body, err)
		}
	})
}

var errRollback = errors.New("rollback")
