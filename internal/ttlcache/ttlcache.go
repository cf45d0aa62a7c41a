// Package ttlcache is a small map whose entries expire: what a service
// reads from Postgres on every request and may serve a few seconds stale
// (a tenant's browser origins, its sentence templates).
package ttlcache

import (
	"sync"
	"time"
)

// MaxEntries bounds a cache: past it, the cache is emptied (so keys made
// up by clients cannot grow it without end).
const MaxEntries = 10_000

// Cache maps strings to values for TTL each. Safe for concurrent use.
type Cache[V any] struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[string]entry[V]
}

type entry[V any] struct {
	v       V
	expires time.Time
}

// New returns a cache whose entries live for ttl.
func New[V any](ttl time.Duration) *Cache[V] {
	return &Cache[V]{ttl: ttl, now: time.Now, m: map[string]entry[V]{}}
}

// Get returns the value of key if it has not expired.
func (c *Cache[V]) Get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || !c.now().Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Put stores v under key for the cache's TTL.
func (c *Cache[V]) Put(key string, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= MaxEntries {
		clear(c.m)
	}
	c.m[key] = entry[V]{v: v, expires: c.now().Add(c.ttl)}
}

// Forget drops key, or every entry when key is "".
func (c *Cache[V]) Forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if key == "" {
		clear(c.m)
		return
	}
	delete(c.m, key)
}
