package webhooker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/pkg/events"
)

// Store keeps endpoints, deliveries and attempts in the webhook schema.
type Store struct{ pool *pgxpool.Pool }

// NewStore returns a Store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// ErrNotFound means no such endpoint or delivery for the tenant.
var ErrNotFound = errors.New("not found")

const endpointColumns = `tenant, id, url, events, parents, format, description, coalesce(rate_limit, 0), retry_schedule, secrets,
	enabled, coalesce(disabled_reason, ''), created_at, updated_at, deleted_at IS NOT NULL, change_seq`

func scanEndpoint(r pgx.CollectableRow) (Endpoint, error) {
	var e Endpoint
	var parents, secrets []byte
	err := r.Scan(&e.Tenant, &e.ID, &e.URL, &e.Events, &parents, &e.Format, &e.Description, &e.RateLimit, &e.RetrySchedule, &secrets,
		&e.Enabled, &e.DisabledReason, &e.CreatedAt, &e.UpdatedAt, &e.deleted, &e.changeSeq)
	if err != nil {
		return e, err
	}
	if len(parents) > 0 {
		if err := json.Unmarshal(parents, &e.Parents); err != nil {
			return e, fmt.Errorf("decode parents: %w", err)
		}
	}
	if err := json.Unmarshal(secrets, &e.secrets); err != nil {
		return e, fmt.Errorf("decode secrets: %w", err)
	}
	return e, nil
}

// CreateEndpoint stores a new endpoint with its first secret.
func (s *Store) CreateEndpoint(ctx context.Context, e Endpoint, firstSecret string) (Endpoint, error) {
	e.ID = newID()
	parents, err := marshalParents(e.Parents)
	if err != nil {
		return Endpoint{}, err
	}
	secrets, _ := json.Marshal([]secret{{Secret: firstSecret}})
	rows, err := s.pool.Query(ctx, `INSERT INTO webhook.endpoints (tenant, id, url, events, parents, format, description, rate_limit, retry_schedule, secrets)
		VALUES ($1, $2, $3, $4, $5, $6, $7, nullif($8, 0), $9, $10) RETURNING `+endpointColumns,
		e.Tenant, e.ID, e.URL, e.Events, parents, e.Format, e.Description, e.RateLimit, nilIfEmpty(e.RetrySchedule), secrets)
	if err != nil {
		return Endpoint{}, fmt.Errorf("insert endpoint: %w", err)
	}
	return pgx.CollectExactlyOneRow(rows, scanEndpoint)
}

func nilIfEmpty(s []int) []int {
	if len(s) == 0 {
		return nil
	}
	return s
}

// GetEndpoint returns a tenant's endpoint that is not deleted.
func (s *Store) GetEndpoint(ctx context.Context, tenant, id string) (Endpoint, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook.endpoints WHERE tenant = $1 AND id = $2 AND deleted_at IS NULL`, tenant, id)
	if err != nil {
		return Endpoint{}, fmt.Errorf("get endpoint: %w", err)
	}
	e, err := pgx.CollectExactlyOneRow(rows, scanEndpoint)
	if errors.Is(err, pgx.ErrNoRows) {
		return Endpoint{}, ErrNotFound
	}
	return e, err
}

// ListEndpoints returns a tenant's endpoints, newest first, after the
// cursor id.
func (s *Store) ListEndpoints(ctx context.Context, tenant, after string, limit int) ([]Endpoint, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook.endpoints
		WHERE tenant = $1 AND deleted_at IS NULL AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3`, tenant, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	return pgx.CollectRows(rows, scanEndpoint)
}

// UpdateEndpoint replaces the editable fields of an endpoint.
func (s *Store) UpdateEndpoint(ctx context.Context, e Endpoint) (Endpoint, error) {
	parents, err := marshalParents(e.Parents)
	if err != nil {
		return Endpoint{}, err
	}
	return s.modify(ctx, e.Tenant, e.ID, `url = $3, events = $4, parents = $5, format = $6, description = $7,
		rate_limit = nullif($8, 0), retry_schedule = $9`, e.URL, e.Events, parents, e.Format, e.Description, e.RateLimit, nilIfEmpty(e.RetrySchedule))
}

// SetEnabled enables (resetting the failure tracker) or disables an
// endpoint.
func (s *Store) SetEnabled(ctx context.Context, tenant, id string, enabled bool, reason string) (Endpoint, error) {
	if enabled {
		return s.modify(ctx, tenant, id, `enabled = true, disabled_reason = NULL, consecutive_failures = 0, failing_since = NULL`)
	}
	return s.modify(ctx, tenant, id, `enabled = false, disabled_reason = $3`, reason)
}

// DeleteEndpoint soft-deletes an endpoint so replicas see it go.
func (s *Store) DeleteEndpoint(ctx context.Context, tenant, id string) error {
	_, err := s.modify(ctx, tenant, id, `deleted_at = now(), enabled = false`)
	return err
}

// RotateSecret makes newSecret the signing secret; the previous ones stay
// valid until now+grace.
func (s *Store) RotateSecret(ctx context.Context, tenant, id, newSecret string, now, expiresAt time.Time) (Endpoint, error) {
	cur, err := s.GetEndpoint(ctx, tenant, id)
	if err != nil {
		return Endpoint{}, err
	}
	next := []secret{{Secret: newSecret}}
	for _, old := range cur.secrets {
		if old.ExpiresAt != nil && !now.Before(*old.ExpiresAt) {
			continue // already expired: drop it
		}
		if old.ExpiresAt == nil || old.ExpiresAt.After(expiresAt) {
			old.ExpiresAt = &expiresAt
		}
		next = append(next, old)
	}
	b, _ := json.Marshal(next)
	// Guard on change_seq: a concurrent rotation makes this one fail
	// instead of silently dropping a secret.
	e, err := s.modifyIf(ctx, tenant, id, `secrets = $3`, `change_seq = $4`, b, cur.changeSeq)
	if errors.Is(err, ErrNotFound) {
		return Endpoint{}, errors.New("the endpoint changed while its secret was being rotated; try again")
	}
	return e, err
}

// modify applies a SET clause ($1 tenant, $2 id, then args) and bumps the
// change sequence.
func (s *Store) modify(ctx context.Context, tenant, id, set string, args ...any) (Endpoint, error) {
	return s.modifyIf(ctx, tenant, id, set, "true", args...)
}

// modifyIf is modify with an extra condition on the row.
func (s *Store) modifyIf(ctx context.Context, tenant, id, set, cond string, args ...any) (Endpoint, error) {
	rows, err := s.pool.Query(ctx, `UPDATE webhook.endpoints SET `+set+`, updated_at = now(), change_seq = nextval('webhook.endpoint_changes')
		WHERE tenant = $1 AND id = $2 AND deleted_at IS NULL AND (`+cond+`) RETURNING `+endpointColumns, append([]any{tenant, id}, args...)...)
	if err != nil {
		return Endpoint{}, fmt.Errorf("update endpoint: %w", err)
	}
	e, err := pgx.CollectExactlyOneRow(rows, scanEndpoint)
	if errors.Is(err, pgx.ErrNoRows) {
		return Endpoint{}, ErrNotFound
	}
	return e, err
}

// changedSince returns every endpoint (deleted ones too) changed after seq.
func (s *Store) changedSince(ctx context.Context, seq int64) ([]Endpoint, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook.endpoints WHERE change_seq > $1 ORDER BY change_seq`, seq)
	if err != nil {
		return nil, fmt.Errorf("load endpoints: %w", err)
	}
	return pgx.CollectRows(rows, scanEndpoint)
}

// Delivery is one event sent to one endpoint, with all its attempts.
type Delivery struct {
	ID            string     `json:"id"`
	EndpointID    string     `json:"endpoint_id"`
	EventID       string     `json:"event_id"`
	EventSeq      uint64     `json:"event_seq"`
	EventType     string     `json:"event_type"`
	Status        string     `json:"status"`
	Attempts      []Attempt  `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	CreatedAt     time.Time  `json:"created_at"`

	n int // attempts made
}

// Attempt is one HTTP try of a delivery.
type Attempt struct {
	N          int       `json:"n"`
	At         time.Time `json:"at"`
	DurationMS int       `json:"duration_ms"`
	StatusCode int       `json:"status_code,omitempty"`
	ErrorClass string    `json:"error_class,omitempty"`
	Error      string    `json:"error,omitempty"`
	Response   string    `json:"response,omitempty"`
}

// job is a delivery ready for its next attempt.
type job struct {
	deliveryID string
	tenant     string
	endpointID string
	event      events.Event // Seq set; body built from it
	attempt    int          // 1-based number of the attempt to make
	// body is the event's JSON, shared by every job of one event (one
	// encoding for a thousand endpoints); nil to encode on attempt.
	body []byte
	// scheduled: taken from webhook.due (a retry, a replay, an expired
	// claim), whose row goes once the delivery is finished.
	scheduled bool
}

// fanoutItem is one event with the endpoints it goes to.
type fanoutItem struct {
	event     events.Event
	endpoints []Endpoint
	body      []byte // the event's JSON delivery body
}

// insertDeliveries records one delivery per (event, endpoint) of a batch of
// events in one statement, skipping those that exist (a redelivered event),
// and claims the new ones for this replica until claimUntil: one
// webhook.claims row per tenant lists them, and the scheduler makes those
// still without an attempt due once the claim expires (the replica died).
// It returns, per item, the jobs of the deliveries it created.
func insertDeliveries(ctx context.Context, pool *pgxpool.Pool, items []fanoutItem, claimUntil time.Time) ([][]job, error) {
	var ids, eps, tenants, eventIDs, types []string
	var seqs []int64
	owner := map[string]int{} // delivery id -> item
	for i, it := range items {
		for _, e := range it.endpoints {
			id := newID()
			owner[id] = i
			ids, eps, tenants, eventIDs, types = append(ids, id), append(eps, e.ID), append(tenants, it.event.Tenant), append(eventIDs, it.event.ID), append(types, it.event.Type)
			seqs = append(seqs, int64(it.event.Seq))
		}
	}
	out := make([][]job, len(items))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := pool.Query(ctx, `WITH d AS (
			INSERT INTO webhook.deliveries (id, tenant, endpoint_id, event_id, event_seq, event_type, next_attempt_at)
			SELECT d.id, d.tenant, d.endpoint_id, d.event_id, d.seq, d.type, $7
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[]) AS d(id, tenant, endpoint_id, event_id, seq, type)
			ON CONFLICT (endpoint_id, event_id) DO NOTHING
			RETURNING id, tenant, endpoint_id
		), c AS (
			INSERT INTO webhook.claims (tenant, claimed_until, delivery_ids)
			SELECT tenant, $7, array_agg(id) FROM d GROUP BY tenant
		)
		SELECT id, endpoint_id FROM d`, ids, tenants, eps, eventIDs, seqs, types, claimUntil)
	if err != nil {
		return nil, fmt.Errorf("insert deliveries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, endpointID string
		if err := rows.Scan(&id, &endpointID); err != nil {
			return nil, err
		}
		i := owner[id]
		ev := items[i].event
		out[i] = append(out[i], job{deliveryID: id, tenant: ev.Tenant, endpointID: endpointID, event: ev, attempt: 1, body: items[i].body})
	}
	return out, rows.Err()
}

// newID returns a time-ordered id (UUIDv7) for endpoints and deliveries.
func newID() string { return uuid.Must(uuid.NewV7()).String() }
