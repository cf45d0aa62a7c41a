package webhooker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/eventline/eventline/pkg/events"
)

// Registry is each replica's in-memory copy of every endpoint, refreshed by
// asking Postgres for rows whose change sequence moved. A new, changed or
// deleted endpoint is seen by every replica within one refresh interval.
type Registry struct {
	store *Store
	every time.Duration
	log   *slog.Logger

	mu       sync.RWMutex
	byID     map[string]Endpoint
	byTenant map[string][]string // endpoint ids
	lastSeq  int64
	loaded   chan struct{}
	once     sync.Once
}

// NewRegistry returns a registry refreshing every interval (default 250ms).
func NewRegistry(store *Store, every time.Duration, log *slog.Logger) *Registry {
	if every <= 0 {
		every = 250 * time.Millisecond
	}
	return &Registry{store: store, every: every, log: log, byID: map[string]Endpoint{}, byTenant: map[string][]string{}, loaded: make(chan struct{})}
}

// Run refreshes until ctx ends.
func (r *Registry) Run(ctx context.Context) {
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "refresh webhook endpoints", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Loaded is closed after the first successful refresh.
func (r *Registry) Loaded() <-chan struct{} { return r.loaded }

// Refresh applies every endpoint change since the last refresh.
func (r *Registry) Refresh(ctx context.Context) error {
	r.mu.RLock()
	seq := r.lastSeq
	r.mu.RUnlock()
	changed, err := r.store.changedSince(ctx, seq)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		r.mu.Lock()
		for _, e := range changed {
			_, known := r.byID[e.ID]
			if e.deleted {
				delete(r.byID, e.ID)
			} else {
				r.byID[e.ID] = e
			}
			if !known || e.deleted {
				r.rebuildTenant(e.Tenant)
			}
			r.lastSeq = max(r.lastSeq, e.changeSeq)
		}
		r.mu.Unlock()
	}
	r.once.Do(func() { close(r.loaded) })
	return nil
}

// rebuildTenant recomputes the id list of one tenant; r.mu held.
func (r *Registry) rebuildTenant(tenant string) {
	var ids []string
	for id, e := range r.byID {
		if e.Tenant == tenant {
			ids = append(ids, id)
		}
	}
	r.byTenant[tenant] = ids
}

// Match returns the endpoints of the event's tenant that want it.
func (r *Registry) Match(ev events.Event) []Endpoint {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []Endpoint
	for _, id := range r.byTenant[ev.Tenant] {
		if e := r.byID[id]; e.Matches(ev) {
			out = append(out, e)
		}
	}
	return out
}

// Get returns the current copy of an endpoint.
func (r *Registry) Get(id string) (Endpoint, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.byID[id]
	return e, ok
}
