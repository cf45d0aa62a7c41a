package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/pkg/events"
)

// Query selects a page of events for one tenant, newest first.
type Query struct {
	Tenant string
	// Object, when set, restricts to the timeline of that object: events
	// whose eventable it is or that have it among their parents.
	Object *events.Ref
	// Types ("card.closed") and Actions ("closed") match when either list
	// contains the event's.
	Types   []string
	Actions []string
	// Creator, when set, matches the event's creator.
	Creator *events.Ref
	// EventableType, when set, matches the eventable's type.
	EventableType string
	// Since (inclusive) and Until (exclusive) bound occurred_at.
	Since, Until time.Time
	// After is the keyset position to continue from.
	After *cursor
	// Limit is the page size.
	Limit int
	// Sentences asks the API to add each event's sentence (not a filter).
	Sentences bool
}

// Continue makes q continue from the next_cursor of an earlier page of
// q.Tenant's (for readers outside this package: the operator console).
func (q *Query) Continue(cursor string) error {
	c, err := decodeCursor(cursor, q.Tenant)
	if err != nil {
		return err
	}
	q.After = &c
	return nil
}

// Page is one page of a timeline.
type Page struct {
	Events     []events.Event `json:"events"`
	NextCursor *string        `json:"next_cursor"`
}

const eventColumns = `e.id, e.seq, e.type, e.action, e.eventable_type, e.eventable_id, e.creator_type, e.creator_id, e.parents, e.particulars, e.occurred_at, e.recorded_at`

// sql builds the statement for q against generation g. Only the filters
// present appear in it, so each combination gets a plan of its own.
func (q Query) sql(g int) (string, []any) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	t := "e" // the table whose columns filter and order: entries for a timeline
	from := fmt.Sprintf("%s.events e", schema(g))
	if q.Object != nil {
		t = "x"
		from = fmt.Sprintf("%[1]s.entries x JOIN %[1]s.events e ON e.tenant = x.tenant AND e.id = x.event_id", schema(g))
		where = append(where, "x.tenant = "+arg(q.Tenant), "x.object_type = "+arg(q.Object.Type), "x.object_id = "+arg(q.Object.ID))
	} else {
		where = append(where, "e.tenant = "+arg(q.Tenant))
	}
	switch {
	case len(q.Types) > 0 && len(q.Actions) > 0:
		where = append(where, fmt.Sprintf("(%[1]s.type = ANY(%[2]s) OR %[1]s.action = ANY(%[3]s))", t, arg(q.Types), arg(q.Actions)))
	case len(q.Types) == 1:
		where = append(where, t+".type = "+arg(q.Types[0]))
	case len(q.Types) > 1:
		where = append(where, t+".type = ANY("+arg(q.Types)+")")
	case len(q.Actions) == 1:
		where = append(where, t+".action = "+arg(q.Actions[0]))
	case len(q.Actions) > 1:
		where = append(where, t+".action = ANY("+arg(q.Actions)+")")
	}
	if q.Creator != nil {
		where = append(where, t+".creator_type = "+arg(q.Creator.Type), t+".creator_id = "+arg(q.Creator.ID))
	}
	if q.EventableType != "" {
		where = append(where, t+".eventable_type = "+arg(q.EventableType))
	}
	if !q.Since.IsZero() {
		where = append(where, t+".occurred_at >= "+arg(q.Since))
	}
	if !q.Until.IsZero() {
		where = append(where, t+".occurred_at < "+arg(q.Until))
	}
	if q.After != nil {
		where = append(where, fmt.Sprintf("(%[1]s.occurred_at, %[1]s.seq) < (%[2]s, %[3]s)", t, arg(q.After.time()), arg(q.After.Seq)))
	}
	sql := fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY %[4]s.occurred_at DESC, %[4]s.seq DESC LIMIT %[5]d",
		eventColumns, from, strings.Join(where, " AND "), t, q.Limit+1)
	return sql, args
}

// List returns one page of q from the current generation. It runs as the
// application role confined to q.Tenant by row-level security, on top of
// the query's own tenant filter (see read).
func (s *Store) List(ctx context.Context, q Query) (Page, error) {
	es, err := read(ctx, s, q.Tenant, func(g int) (string, []any) { return q.sql(g) }, func(rows pgx.Rows) ([]events.Event, error) {
		return pgx.CollectRows(rows, scanEvent(q.Tenant))
	})
	if err != nil {
		return Page{}, fmt.Errorf("read timeline: %w", err)
	}
	page := Page{Events: es}
	if len(es) > q.Limit {
		page.Events = es[:q.Limit]
		last := page.Events[q.Limit-1]
		c := encodeCursor(q.Tenant, last.OccurredAt, last.Seq)
		page.NextCursor = &c
	}
	return page, nil
}

// ErrNotFound means no event has that id for the tenant.
var ErrNotFound = errors.New("event not found")

// Get returns one event of the tenant by id, under row-level security
// like List.
func (s *Store) Get(ctx context.Context, tenant, id string) (events.Event, error) {
	e, err := read(ctx, s, tenant, func(g int) (string, []any) {
		return fmt.Sprintf("SELECT %s FROM %s.events e WHERE e.tenant = $1 AND e.id = $2", eventColumns, schema(g)), []any{tenant, id}
	}, func(rows pgx.Rows) (events.Event, error) {
		return pgx.CollectExactlyOneRow(rows, scanEvent(tenant))
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return events.Event{}, ErrNotFound
	}
	if err != nil {
		return events.Event{}, fmt.Errorf("read event: %w", err)
	}
	return e, nil
}

// read runs one timeline read as the tenant (postgres.TenantBatch) in two
// round trips, as many as reading the generation and then the rows did
// before row-level security: the statement for the generation last seen is
// sent together with BEGIN, the role, the tenant and the read of the
// current generation. When a rebuild has switched generations meanwhile
// (the statement may then fail on dropped tables), it is run again for the
// new one.
func read[T any](ctx context.Context, s *Store, tenant string, stmt func(g int) (string, []any), scan func(pgx.Rows) (T, error)) (T, error) {
	var out T
	g := int(s.generation.Load())
	if g == 0 {
		cur, err := s.CurrentGeneration(ctx)
		if err != nil {
			return out, err
		}
		g = cur
	}
	for attempt := 0; ; attempt++ {
		sql, args := stmt(g)
		var b pgx.Batch
		b.Queue(`SELECT generation FROM timeline.current`)
		b.Queue(sql, args...)
		cur := g
		var scanErr error
		err := postgres.TenantBatch(ctx, s.pool, tenant, pgx.TxOptions{AccessMode: pgx.ReadOnly}, &b, func(br pgx.BatchResults) error {
			if err := br.QueryRow().Scan(&cur); err != nil {
				return fmt.Errorf("read current timeline generation: %w", err)
			}
			rows, err := br.Query()
			if err != nil {
				scanErr = err
				return nil // the rows of an old generation: retried below
			}
			out, scanErr = scan(rows)
			return nil
		})
		if cur != g && attempt == 0 {
			s.generation.Store(int64(cur))
			g = cur
			continue
		}
		s.generation.Store(int64(g))
		if err != nil {
			return out, err
		}
		return out, scanErr
	}
}

func scanEvent(tenant string) pgx.RowToFunc[events.Event] {
	return func(r pgx.CollectableRow) (events.Event, error) {
		var e events.Event
		var seq int64
		var parents []byte
		var particulars []byte
		err := r.Scan(&e.ID, &seq, &e.Type, &e.Action, &e.Eventable.Type, &e.Eventable.ID, &e.Creator.Type, &e.Creator.ID,
			&parents, &particulars, &e.OccurredAt, &e.RecordedAt)
		if err != nil {
			return e, err
		}
		e.Tenant, e.Seq = tenant, uint64(seq)
		e.OccurredAt, e.RecordedAt = e.OccurredAt.UTC(), e.RecordedAt.UTC()
		e.Particulars = json.RawMessage(particulars)
		if e.Parents, err = decodeParents(parents); err != nil {
			return e, fmt.Errorf("decode parents of %s: %w", e.ID, err)
		}
		return e, nil
	}
}
