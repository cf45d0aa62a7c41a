package apikey

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/pkg/events"
)

// Store keeps keys in auth.api_keys and caches verified lookups so that a
// request does not cost a database round trip. A revoked key stops working
// within CacheTTL.
type Store struct {
	pool     *pgxpool.Pool
	cacheTTL time.Duration
	now      func() time.Time

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	key     Key
	found   bool
	expires time.Time
}

// DefaultCacheTTL bounds how long a revoked key may keep working on a
// running service.
const DefaultCacheTTL = 30 * time.Second

// NewStore returns a Store over pool. cacheTTL 0 means DefaultCacheTTL; a
// negative value disables the cache.
func NewStore(pool *pgxpool.Pool, cacheTTL time.Duration) *Store {
	if cacheTTL == 0 {
		cacheTTL = DefaultCacheTTL
	}
	return &Store{pool: pool, cacheTTL: cacheTTL, now: time.Now, cache: map[string]cached{}}
}

// CreateParams describes a new key.
type CreateParams struct {
	Tenant      string
	Scopes      []string
	RateLimit   int // events per second; 0 for the service default
	Description string
}

// Create stores a new key and returns it with its plaintext, which is never
// stored and cannot be shown again.
func (s *Store) Create(ctx context.Context, p CreateParams) (Key, string, error) {
	if !events.IsTenant(p.Tenant) {
		return Key{}, "", fmt.Errorf("tenant %q must match ^[a-z0-9][a-z0-9_-]{0,62}$", p.Tenant)
	}
	if len(p.Scopes) == 0 {
		return Key{}, "", errors.New("a key needs at least one scope")
	}
	if p.RateLimit < 0 {
		return Key{}, "", errors.New("rate limit must be positive, or 0 for the default")
	}
	id, plaintext, hash, err := generate()
	if err != nil {
		return Key{}, "", err
	}
	var rate *int
	if p.RateLimit > 0 {
		rate = &p.RateLimit
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO auth.api_keys (id, tenant, secret_hash, scopes, rate_limit, description)
		VALUES ($1, $2, $3, $4, $5, $6)`, id, p.Tenant, hash, p.Scopes, rate, p.Description)
	if err != nil {
		return Key{}, "", fmt.Errorf("insert api key: %w", err)
	}
	return Key{ID: id, Tenant: p.Tenant, Scopes: p.Scopes, RateLimit: p.RateLimit, Description: p.Description, secretHash: hash}, plaintext, nil
}

// Authenticate returns the key for a presented plaintext, or ErrInvalid.
// The secret is compared in constant time against the stored hash.
func (s *Store) Authenticate(ctx context.Context, plaintext string) (Key, error) {
	id, secret, ok := split(plaintext)
	if !ok {
		return Key{}, ErrInvalid
	}
	k, found, err := s.lookup(ctx, id)
	if err != nil {
		return Key{}, err
	}
	if !found || !k.matches(secret) {
		return Key{}, ErrInvalid
	}
	return k, nil
}

// Get returns the key with this id while it is not revoked, else
// ErrInvalid; like Authenticate it is cached, so a revoked key is refused
// within CacheTTL. Credentials minted with a key (a webhook portal token)
// check through it that the key still stands.
func (s *Store) Get(ctx context.Context, id string) (Key, error) {
	k, found, err := s.lookup(ctx, id)
	if err != nil {
		return Key{}, err
	}
	if !found {
		return Key{}, ErrInvalid
	}
	return k, nil
}

func (s *Store) lookup(ctx context.Context, id string) (Key, bool, error) {
	now := s.now()
	if s.cacheTTL > 0 {
		s.mu.Lock()
		c, ok := s.cache[id]
		s.mu.Unlock()
		if ok && now.Before(c.expires) {
			return c.key, c.found, nil
		}
	}
	var k Key
	var rate *int
	err := s.pool.QueryRow(ctx, `SELECT id, tenant, secret_hash, scopes, rate_limit, description
		FROM auth.api_keys WHERE id = $1 AND revoked_at IS NULL`, id).
		Scan(&k.ID, &k.Tenant, &k.secretHash, &k.Scopes, &rate, &k.Description)
	found := true
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		found = false
	case err != nil:
		return Key{}, false, fmt.Errorf("look up api key: %w", err)
	}
	if rate != nil {
		k.RateLimit = *rate
	}
	if s.cacheTTL > 0 {
		s.mu.Lock()
		if len(s.cache) > 100_000 { // bound memory against random ids
			clear(s.cache)
		}
		s.cache[id] = cached{key: k, found: found, expires: now.Add(s.cacheTTL)}
		s.mu.Unlock()
	}
	return k, found, nil
}

// List returns the tenant's keys that are not revoked, oldest first; with
// an empty tenant, every tenant's.
func (s *Store) List(ctx context.Context, tenant string) ([]Key, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, tenant, scopes, coalesce(rate_limit, 0), description
		FROM auth.api_keys WHERE revoked_at IS NULL AND ($1 = '' OR tenant = $1) ORDER BY created_at, id`, tenant)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) {
		var k Key
		err := r.Scan(&k.ID, &k.Tenant, &k.Scopes, &k.RateLimit, &k.Description)
		return k, err
	})
}

// Revoke marks a key revoked. Running services stop accepting it within
// their cache TTL.
func (s *Store) Revoke(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE auth.api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, id)
	if err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("no active key with id %q", id)
	}
	s.mu.Lock()
	delete(s.cache, id)
	s.mu.Unlock()
	return nil
}

// Revoked reports whether the key with this id is revoked or does not
// exist, reading the database (not the cache): the NATS callout's
// revocation sweep asks it.
func (s *Store) Revoked(ctx context.Context, id string) (bool, error) {
	var active bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM auth.api_keys WHERE id = $1 AND revoked_at IS NULL)`, id).Scan(&active)
	if err != nil {
		return false, fmt.Errorf("look up api key: %w", err)
	}
	return !active, nil
}
