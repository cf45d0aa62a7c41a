package endpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/secretbox"
	"github.com/eventline/eventline/pkg/webhook"
)

// Store keeps endpoints in the webhook schema.
// Methods that take a tenant serve the API and run as that tenant under
// row-level security (postgres.TenantTx); the workers' methods run as the
// owner across tenants. Endpoint secrets are sealed with keys (see
// secretbox) bound to their row.
type Store struct {
	pool *pgxpool.Pool
	keys *secretbox.Keyring
}

// NewStore returns a Store over pool sealing secrets with keys.
func NewStore(pool *pgxpool.Pool, keys *secretbox.Keyring) *Store {
	return &Store{pool: pool, keys: keys}
}

// ErrNotFound means no such endpoint for the tenant.
var ErrNotFound = errors.New("not found")

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

const endpointColumns = `tenant, id, url, events, parents, format, description, coalesce(rate_limit, 0), retry_schedule, secrets, secrets_sealed,
	enabled, coalesce(disabled_reason, ''), created_at, updated_at, deleted_at IS NOT NULL, change_seq`

// secretsAAD binds sealed secrets to their row: they open only as the
// secrets of this tenant's endpoint id.
func secretsAAD(tenant, id string) []byte {
	return []byte("webhook.endpoints\x00" + tenant + "\x00" + id)
}

func (s *Store) scanEndpoint(r pgx.CollectableRow) (Endpoint, error) {
	var e Endpoint
	var parents, plain, sealed []byte
	err := r.Scan(&e.Tenant, &e.ID, &e.URL, &e.Events, &parents, &e.Format, &e.Description, &e.RateLimit, &e.RetrySchedule, &plain, &sealed,
		&e.Enabled, &e.DisabledReason, &e.CreatedAt, &e.UpdatedAt, &e.deleted, &e.changeSeq)
	if err != nil {
		return e, err
	}
	if len(parents) > 0 {
		if err := json.Unmarshal(parents, &e.Parents); err != nil {
			return e, fmt.Errorf("decode parents: %w", err)
		}
	}
	if sealed != nil {
		if plain, err = s.keys.Open(sealed, secretsAAD(e.Tenant, e.ID)); err != nil {
			return e, fmt.Errorf("open the secrets of webhook %s: %w", e.ID, err)
		}
	} // else: a row from before 0006 that SealSecrets has not reached yet
	if err := json.Unmarshal(plain, &e.secrets); err != nil {
		return e, fmt.Errorf("decode the secrets of webhook %s: %w", e.ID, err)
	}
	e.Signing = SigningHMAC
	if len(e.secrets) > 0 && webhook.IsSigningKey(e.secrets[0].Secret) {
		e.Signing = SigningEd25519
		if e.PublicKey, err = webhook.PublicKey(e.secrets[0].Secret); err != nil {
			return e, fmt.Errorf("the signing key of webhook %s: %w", e.ID, err)
		}
	}
	return e, nil
}

// seal encodes and seals an endpoint's secrets for its row.
func (s *Store) seal(tenant, id string, secrets []secret) ([]byte, error) {
	plain, err := json.Marshal(secrets) //nolint:gosec // G117: the JSON is sealed right below, never stored or logged in the clear
	if err != nil {
		return nil, err
	}
	return s.keys.Seal(plain, secretsAAD(tenant, id))
}

// SealFirstSecret seals secret as the only secret of the tenant's
// endpoint id, as CreateEndpoint stores it, and names the key that sealed
// it (webhook.endpoints.secrets_sealed and secrets_key): for endpoints
// written in bulk without the Store (the fan-out benchmarks).
func (s *Store) SealFirstSecret(tenant, id, plaintext string) (sealed []byte, keyID string, err error) {
	sealed, err = s.seal(tenant, id, []secret{{Secret: plaintext}})
	return sealed, s.keys.PrimaryID(), err
}

// CreateEndpoint stores a new endpoint with its first secret, whatever
// the tenant already has.
func (s *Store) CreateEndpoint(ctx context.Context, e Endpoint, firstSecret string) (Endpoint, error) {
	return s.CreateEndpointCapped(ctx, e, firstSecret, 0)
}

// DefaultMaxEndpoints is how many endpoints (not deleted) a tenant may have
// by default (WEBHOOK_MAX_ENDPOINTS; docs/webhooks.md).
const DefaultMaxEndpoints = 10_000

// EndpointCapError refuses an endpoint the tenant has no room for: it has
// Existing endpoints (not deleted) and may have at most Max.
type EndpointCapError struct {
	Max, Existing int
}

func (e *EndpointCapError) Error() string {
	return fmt.Sprintf("the tenant has %d webhook endpoints and may have at most %d (WEBHOOK_MAX_ENDPOINTS)", e.Existing, e.Max)
}

// CreateEndpointCapped is CreateEndpoint refusing with *EndpointCapError
// when the tenant already has maxEndpoints endpoints that are not deleted
// (0: no cap). Creates of one tenant are serialised by an advisory lock
// held until the insert commits, so concurrent creates never exceed the cap.
func (s *Store) CreateEndpointCapped(ctx context.Context, e Endpoint, firstSecret string, maxEndpoints int) (Endpoint, error) {
	e.ID = newID()
	parents, err := marshalParents(e.Parents)
	if err != nil {
		return Endpoint{}, err
	}
	sealed, err := s.seal(e.Tenant, e.ID, []secret{{Secret: firstSecret}})
	if err != nil {
		return Endpoint{}, err
	}
	var out Endpoint
	err = postgres.TenantTx(ctx, s.pool, e.Tenant, func(tx pgx.Tx) error {
		if maxEndpoints > 0 {
			// The lock's first key names this use; the second is the
			// tenant's hash (a collision only serialises two tenants). The
			// count is a statement of its own: under READ COMMITTED it
			// then sees every create that committed while this one waited
			// for the lock, which a snapshot taken before it would not.
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, endpointCapLock, e.Tenant); err != nil {
				return fmt.Errorf("lock the tenant's endpoints: %w", err)
			}
			var existing int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM webhook.endpoints WHERE tenant = $1 AND deleted_at IS NULL`, e.Tenant).Scan(&existing); err != nil {
				return fmt.Errorf("count endpoints: %w", err)
			}
			if existing >= maxEndpoints {
				return &EndpointCapError{Max: maxEndpoints, Existing: existing}
			}
		}
		rows, err := tx.Query(ctx, `INSERT INTO webhook.endpoints (tenant, id, url, events, parents, format, description, rate_limit, retry_schedule, secrets_sealed, secrets_key)
			VALUES ($1, $2, $3, $4, $5, $6, $7, nullif($8, 0), $9, $10, $11) RETURNING `+endpointColumns,
			e.Tenant, e.ID, e.URL, e.Events, parents, e.Format, e.Description, e.RateLimit, nilIfEmpty(e.RetrySchedule), sealed, s.keys.PrimaryID())
		if err != nil {
			return fmt.Errorf("insert endpoint: %w", err)
		}
		out, err = pgx.CollectExactlyOneRow(rows, s.scanEndpoint)
		return err
	})
	return out, err
}

// endpointCapLock is the first key of the advisory lock that serialises a
// tenant's endpoint creates (CreateEndpointCapped).
const endpointCapLock int32 = 7262001

func nilIfEmpty(s []int) []int {
	if len(s) == 0 {
		return nil
	}
	return s
}

// GetEndpoint returns a tenant's endpoint that is not deleted.
func (s *Store) GetEndpoint(ctx context.Context, tenant, id string) (Endpoint, error) {
	es, err := s.readEndpoints(ctx, tenant, `SELECT `+endpointColumns+` FROM webhook.endpoints WHERE tenant = $1 AND id = $2 AND deleted_at IS NULL`, tenant, id)
	if err != nil {
		return Endpoint{}, fmt.Errorf("get endpoint: %w", err)
	}
	if len(es) == 0 {
		return Endpoint{}, ErrNotFound
	}
	return es[0], nil
}

func (s *Store) getEndpoint(ctx context.Context, q querier, tenant, id string) (Endpoint, error) {
	rows, err := q.Query(ctx, `SELECT `+endpointColumns+` FROM webhook.endpoints WHERE tenant = $1 AND id = $2 AND deleted_at IS NULL`, tenant, id)
	if err != nil {
		return Endpoint{}, fmt.Errorf("get endpoint: %w", err)
	}
	e, err := pgx.CollectExactlyOneRow(rows, s.scanEndpoint)
	if errors.Is(err, pgx.ErrNoRows) {
		return Endpoint{}, ErrNotFound
	}
	return e, err
}

// ListEndpoints returns a tenant's endpoints, newest first, after the
// cursor id.
func (s *Store) ListEndpoints(ctx context.Context, tenant, after string, limit int) ([]Endpoint, error) {
	es, err := s.readEndpoints(ctx, tenant, `SELECT `+endpointColumns+` FROM webhook.endpoints
		WHERE tenant = $1 AND deleted_at IS NULL AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3`, tenant, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	return es, nil
}

// readEndpoints runs one endpoint query as the tenant, pipelined with the
// start of its transaction (postgres.TenantBatch).
func (s *Store) readEndpoints(ctx context.Context, tenant, sql string, args ...any) (es []Endpoint, err error) {
	var b pgx.Batch
	b.Queue(sql, args...)
	err = postgres.TenantBatch(ctx, s.pool, tenant, pgx.TxOptions{AccessMode: pgx.ReadOnly}, &b, func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		es, err = pgx.CollectRows(rows, s.scanEndpoint)
		return err
	})
	return es, err
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
func (s *Store) RotateSecret(ctx context.Context, tenant, id, newSecret string, now, expiresAt time.Time) (e Endpoint, err error) {
	err = postgres.TenantTx(ctx, s.pool, tenant, func(tx pgx.Tx) error {
		cur, err := s.getEndpoint(ctx, tx, tenant, id)
		if err != nil {
			return err
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
		sealed, err := s.seal(tenant, id, next)
		if err != nil {
			return err
		}
		// Guard on change_seq: a concurrent rotation makes this one fail
		// instead of silently dropping a secret.
		e, err = s.modifyIf(ctx, tx, tenant, id, `secrets = NULL, secrets_sealed = $3, secrets_key = $4`, `change_seq = $5`, sealed, s.keys.PrimaryID(), cur.changeSeq)
		if errors.Is(err, ErrNotFound) {
			return errors.New("the endpoint changed while its secret was being rotated; try again")
		}
		return err
	})
	return e, err
}

// modify applies a SET clause ($1 tenant, $2 id, then args) and bumps the
// change sequence, as the tenant.
func (s *Store) modify(ctx context.Context, tenant, id, set string, args ...any) (e Endpoint, err error) {
	err = postgres.TenantTx(ctx, s.pool, tenant, func(tx pgx.Tx) error {
		e, err = s.modifyIf(ctx, tx, tenant, id, set, "true", args...)
		return err
	})
	return e, err
}

// modifyIf is modify with an extra condition on the row, in q.
func (s *Store) modifyIf(ctx context.Context, q querier, tenant, id, set, cond string, args ...any) (Endpoint, error) {
	rows, err := q.Query(ctx, `UPDATE webhook.endpoints SET `+set+`, updated_at = now(), change_seq = nextval('webhook.endpoint_changes')
		WHERE tenant = $1 AND id = $2 AND deleted_at IS NULL AND (`+cond+`) RETURNING `+endpointColumns, append([]any{tenant, id}, args...)...)
	if err != nil {
		return Endpoint{}, fmt.Errorf("update endpoint: %w", err)
	}
	e, err := pgx.CollectExactlyOneRow(rows, s.scanEndpoint)
	if errors.Is(err, pgx.ErrNoRows) {
		return Endpoint{}, ErrNotFound
	}
	return e, err
}

// changedSince returns every endpoint (deleted ones too) changed by a
// transaction not older than since, in change order, and what to pass as
// since next time: the oldest transaction still running before the read.
// Rows committed out of change_seq order are therefore never skipped
// (docs/architecture.md §14); a row may come back in the next read, and the
// registry ignores a copy it already has.
func (s *Store) changedSince(ctx context.Context, since int64) ([]Endpoint, int64, error) {
	// Both statements in one round trip (a refresh runs four times a
	// second on every replica, changes or not): the horizon is read by the
	// first, so with a snapshot taken before the second's, as when each
	// was a round trip of its own.
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint`)
	b.Queue(`SELECT `+endpointColumns+` FROM webhook.endpoints WHERE change_xid >= $1::bigint::text::xid8 ORDER BY change_seq`, since)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	var next int64
	if err := br.QueryRow().Scan(&next); err != nil {
		return nil, since, fmt.Errorf("load endpoints: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, since, fmt.Errorf("load endpoints: %w", err)
	}
	changed, err := pgx.CollectRows(rows, s.scanEndpoint)
	if err == nil {
		err = br.Close()
	}
	if err != nil {
		return nil, since, fmt.Errorf("load endpoints: %w", err)
	}
	return changed, next, nil
}

// SealSecrets seals the secrets of every endpoint that holds them in
// plaintext (rows from before migration 0006) or sealed with a key other
// than the primary one (after a key rotation), in batches, and returns how
// many it sealed. Every replica runs it on start; concurrent runs are safe
// (rows are locked and rechecked). It fails, naming the key id, when a
// row is sealed with a key the keyring does not hold.
func (s *Store) SealSecrets(ctx context.Context) (int, error) {
	total := 0
	for {
		n := 0
		err := postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT tenant, id, secrets, secrets_sealed FROM webhook.endpoints
				WHERE secrets_sealed IS NULL OR secrets_key <> $1 ORDER BY id LIMIT 500 FOR UPDATE`, s.keys.PrimaryID())
			if err != nil {
				return fmt.Errorf("find endpoint secrets to seal: %w", err)
			}
			type row struct {
				tenant, id    string
				plain, sealed []byte
			}
			todo, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
				var x row
				return x, r.Scan(&x.tenant, &x.id, &x.plain, &x.sealed)
			})
			if err != nil {
				return fmt.Errorf("find endpoint secrets to seal: %w", err)
			}
			for _, x := range todo {
				plain := x.plain
				if x.sealed != nil {
					if plain, err = s.keys.Open(x.sealed, secretsAAD(x.tenant, x.id)); err != nil {
						return fmt.Errorf("re-seal the secrets of webhook %s: %w (configure the key that sealed them in EVENTLINE_OLD_SECRET_KEYS)", x.id, err)
					}
				}
				sealed, err := s.keys.Seal(plain, secretsAAD(x.tenant, x.id))
				if err != nil {
					return err
				}
				// change_seq stays: the secrets themselves did not change.
				if _, err := tx.Exec(ctx, `UPDATE webhook.endpoints SET secrets = NULL, secrets_sealed = $3, secrets_key = $4 WHERE tenant = $1 AND id = $2`,
					x.tenant, x.id, sealed, s.keys.PrimaryID()); err != nil {
					return fmt.Errorf("seal the secrets of webhook %s: %w", x.id, err)
				}
			}
			n = len(todo)
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < 500 {
			return total, nil
		}
	}
}

// newID returns a time-ordered id (UUIDv7) for endpoints.
func newID() string { return uuid.Must(uuid.NewV7()).String() }
