package render

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/ttlcache"
	"github.com/eventline/eventline/pkg/events"
)

// Builtin are the sentences of the event types eventline knows from
// Fizzy-like applications (the demo stream of `eventline dev --demo`
// uses every one). A tenant's template for a type replaces its entry.
var Builtin = map[string]string{
	"card.published":   "{creator} published card *{title|eventable.id}*",
	"card.assigned":    "{creator} assigned {assignee_ids|assignee_id} to *{title|eventable.id}*",
	"card.moved":       "{creator} moved *{title|eventable.id}* to {to_column|column}",
	"card.closed":      "{creator} closed *{title|eventable.id}*",
	"card.reopened":    "{creator} reopened *{title|eventable.id}*",
	"comment.created":  "{creator} commented on card *{card_title|parent.card}*",
	"webhook.disabled": "eventline disabled webhook endpoint *{eventable.id}* after repeated failures",
	// The webhooker's operational events (docs/webhooks.md "Operational events").
	"webhook.attempt_failing":   "deliveries to webhook endpoint *{eventable.id}* are failing: {failures} failed attempts in a row",
	"webhook.attempt_exhausted": "eventline gave up delivering {event_type|'an event'} to webhook endpoint *{eventable.id}* after {attempts} attempts",
	"webhook.recovered":         "webhook endpoint *{eventable.id}* receives deliveries again",
}

// Generic is the sentence of any event no template applies to:
// "bob archived board *Roadmap*". It always applies.
const Generic = "{creator} {action} {eventable.type} *{title|name|eventable.id}*"

var (
	builtin = mustParseAll(Builtin)
	generic = mustParse(Generic)
)

func mustParse(s string) Template {
	t, err := Parse(s)
	if err != nil {
		panic(fmt.Sprintf("built-in template %q: %v", s, err))
	}
	return t
}

func mustParseAll(m map[string]string) map[string]Template {
	out := make(map[string]Template, len(m))
	for k, v := range m {
		out[k] = mustParse(v)
	}
	return out
}

// Set is one tenant's templates over the built-in ones.
type Set struct {
	own map[string]Template
}

// Render returns the sentence of e: the tenant's template for its type,
// else the built-in one, else Generic — the first that applies.
func (s Set) Render(e events.Event) Sentence {
	if e.Type == "" {
		e.Type = events.TypeOf(e.Eventable.Type, e.Action)
	}
	f := FieldsOf(e)
	for _, t := range []Template{s.own[e.Type], builtin[e.Type]} {
		if t.nodes == nil {
			continue
		}
		if out, ok := t.Execute(f); ok {
			return out
		}
	}
	out, _ := generic.Execute(f)
	return out
}

// Name is how a sentence names obj, an object of e (its eventable or a
// parent): "card *Fix login*" from a title the event carries (title for
// the eventable, <type>_title or <type>_name for a parent), else
// "card *c42*".
func (Set) Name(e events.Event, obj events.Ref) Sentence {
	f := FieldsOf(e)
	alts := []string{obj.Type + "_title", obj.Type + "_name"}
	if obj == e.Eventable {
		alts = []string{"title", "name"}
	}
	name := obj.ID
	for _, a := range alts {
		if v, ok := f.particular(a); ok {
			name = v
			break
		}
	}
	return Sentence{{Text: obj.Type + " "}, {Text: name, Em: true}}
}

// Builtins is the Set without any tenant's templates.
func Builtins() Set { return Set{} }

// TemplatesCacheTTL is how long a replica may render with a tenant's
// templates after they changed.
const TemplatesCacheTTL = 5 * time.Second

// Store keeps the tenants' templates (eventline.sentence_templates) and
// caches each tenant's Set for TemplatesCacheTTL. Safe for concurrent use.
type Store struct {
	pool  *pgxpool.Pool
	cache *ttlcache.Cache[Set]
}

// NewStore returns a Store over pool; a nil pool renders the built-in
// sentences only.
func NewStore(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool, cache: ttlcache.New[Set](TemplatesCacheTTL)}
}

// For returns the tenant's Set. On a database error it returns the
// built-in Set with the error, so callers can still render.
func (s *Store) For(ctx context.Context, tenant string) (Set, error) {
	if s == nil || s.pool == nil {
		return Set{}, nil
	}
	if set, ok := s.cache.Get(tenant); ok {
		return set, nil
	}
	raw, err := s.templates(ctx, s.pool, tenant)
	if err != nil {
		return Set{}, err
	}
	set := Set{own: map[string]Template{}}
	for typ, src := range raw {
		if t, err := Parse(src); err == nil { // stored ones were checked; a built-in parser change must not break rendering
			set.own[typ] = t
		}
	}
	s.cache.Put(tenant, set)
	return set, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (s *Store) templates(ctx context.Context, q querier, tenant string) (map[string]string, error) {
	rows, err := q.Query(ctx, `SELECT event_type, template FROM eventline.sentence_templates WHERE tenant = $1`, tenant)
	if err != nil {
		return nil, fmt.Errorf("read sentence templates: %w", err)
	}
	out := map[string]string{}
	var typ, src string
	_, err = pgx.ForEachRow(rows, []any{&typ, &src}, func() error { out[typ] = src; return nil })
	if err != nil {
		return nil, fmt.Errorf("read sentence templates: %w", err)
	}
	return out, nil
}

// Templates returns the tenant's own templates by event type.
func (s *Store) Templates(ctx context.Context, tenant string) (map[string]string, error) {
	var out map[string]string
	err := postgres.TenantTx(ctx, s.pool, tenant, func(tx pgx.Tx) error {
		var err error
		out, err = s.templates(ctx, tx, tenant)
		return err
	})
	return out, err
}

// SetTemplates replaces the tenant's templates (checked with
// ParseTemplates), as the tenant under row-level security.
func (s *Store) SetTemplates(ctx context.Context, tenant string, templates map[string]string) error {
	types := make([]string, 0, len(templates))
	for typ := range templates {
		types = append(types, typ)
	}
	slices.Sort(types)
	srcs := make([]string, len(types))
	for i, typ := range types {
		srcs[i] = templates[typ]
	}
	err := postgres.TenantTx(ctx, s.pool, tenant, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM eventline.sentence_templates WHERE tenant = $1`, tenant); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO eventline.sentence_templates (tenant, event_type, template)
			SELECT $1, t, s FROM unnest($2::text[], $3::text[]) AS x(t, s)`, tenant, types, srcs)
		return err
	})
	if err != nil {
		return fmt.Errorf("store sentence templates: %w", err)
	}
	s.cache.Forget(tenant)
	return nil
}

var eventType = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}\.[a-z][a-z0-9_]{0,62}$`)

// ParseTemplates checks templates by event type, naming each error by
// its field path (templates["card.moved"]).
func ParseTemplates(templates map[string]string) []events.FieldError {
	var errs []events.FieldError
	if len(templates) > MaxTemplates {
		errs = append(errs, events.FieldError{Field: "templates", Message: fmt.Sprintf("at most %d templates", MaxTemplates)})
	}
	types := make([]string, 0, len(templates))
	for typ := range templates {
		types = append(types, typ)
	}
	slices.Sort(types)
	for _, typ := range types {
		field := fmt.Sprintf("templates[%q]", typ)
		if !eventType.MatchString(typ) {
			errs = append(errs, events.FieldError{Field: field, Message: "the key must be an event type <eventable type>.<action>, such as card.moved"})
			continue
		}
		if _, err := Parse(templates[typ]); err != nil {
			errs = append(errs, events.FieldError{Field: field, Message: "the template " + err.Error()})
		}
	}
	return errs
}
