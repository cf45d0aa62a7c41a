package endpoint

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/eventline/eventline/pkg/events"
)

// Registry is each replica's in-memory copy of every endpoint, refreshed by
// asking Postgres for rows whose change sequence moved. A new, changed or
// deleted endpoint is seen by every replica within one refresh interval.
//
// Enabled endpoints are indexed by what they subscribe to (endpointIndex),
// so that matching an event and applying a change both cost the same
// whether a tenant has ten endpoints or a hundred thousand.
type Registry struct {
	store *Store
	every time.Duration
	log   *slog.Logger

	mu     sync.RWMutex
	byID   map[string]Endpoint
	index  endpointIndex
	since  int64 // the transaction horizon of the next read (Store.changedSince)
	loaded chan struct{}
	once   sync.Once
}

// NewRegistry returns a registry refreshing every interval (default 250ms).
func NewRegistry(store *Store, every time.Duration, log *slog.Logger) *Registry {
	if every <= 0 {
		every = 250 * time.Millisecond
	}
	return &Registry{store: store, every: every, log: log, byID: map[string]Endpoint{}, index: endpointIndex{}, loaded: make(chan struct{})}
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
	since := r.since
	r.mu.RUnlock()
	changed, next, err := r.store.changedSince(ctx, since)
	if err != nil {
		return err
	}
	r.apply(changed)
	r.mu.Lock()
	r.since = next
	r.mu.Unlock()
	r.once.Do(func() { close(r.loaded) })
	return nil
}

// apply applies a batch of endpoint changes, in change order: new,
// changed and deleted (e.deleted) endpoints. Each costs its own index
// entries, whatever the size of its tenant. A copy no newer than the one
// held (read again, see Store.changedSince) changes nothing.
func (r *Registry) apply(changed []Endpoint) {
	if len(changed) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range changed {
		old, ok := r.byID[e.ID]
		if ok && old.changeSeq >= e.changeSeq {
			continue
		}
		if ok {
			r.index.remove(old)
		}
		if e.deleted {
			delete(r.byID, e.ID)
		} else {
			r.byID[e.ID] = e
			r.index.add(e)
		}
	}
}

// Match returns the endpoints of the event's tenant that want it
// (Endpoint.Matches), ordered by id.
func (r *Registry) Match(ev events.Event) []Endpoint {
	if ev.Type == TestEventType {
		return nil // matches no endpoint (Endpoint.Matches)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	ids := r.index.candidates(ev, nil)
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	ids = slices.Compact(ids) // an endpoint can sit under several keys
	// Sized once: an event to 100,000 endpoints grew it by copying
	// Endpoints a few hundred thousand times.
	out := make([]Endpoint, 0, len(ids))
	for _, id := range ids {
		if e := r.byID[id]; e.Matches(ev) {
			out = append(out, e)
		}
	}
	return out
}

// Len is how many endpoints the registry holds, enabled or not.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byID)
}

// Get returns the current copy of an endpoint.
func (r *Registry) Get(id string) (Endpoint, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.byID[id]
	return e, ok
}

// endpointIndex maps what an event can be matched by to the ids of the
// enabled endpoints subscribed to it. An event type "t.a" is matched by
// the patterns "*" and "*.*", "t.*", "*.a" and "t.a" (matchPattern), and,
// for an endpoint with a parents filter, only through one of its parents:
// an endpoint sits under one key per pattern and filter parent, and an
// event looks up four pattern keys times its eventable, its parents and
// "no filter". The keys are a superset of what matches; Match checks each
// candidate with Endpoint.Matches.
type endpointIndex map[indexKey]map[string]struct{}

// Kinds of pattern, by which half of the event type they compare.
const (
	patternAll    = iota // "*", "*.*"
	patternPrefix        // "t.*": the type half
	patternSuffix        // "*.a": the action half
	patternExact         // "t.a": both halves
)

type indexKey struct {
	tenant string
	kind   uint8
	typ    string // the pattern's type half (prefix, exact)
	action string // the pattern's action half (suffix, exact)
	// filtered: the endpoint has a parents filter and parent is one of
	// them; else parent is zero.
	filtered bool
	parent   events.Ref
}

// patternKey is the key of a pattern, without tenant or parent, such that
// matchPattern(p, typ) holds exactly when patternKey(p) is among
// typeKeys(typ).
func patternKey(p string) indexKey {
	if p == "*" {
		return indexKey{kind: patternAll}
	}
	t, a, _ := strings.Cut(p, ".")
	switch {
	case t == "*" && a == "*":
		return indexKey{kind: patternAll}
	case a == "*":
		return indexKey{kind: patternPrefix, typ: t}
	case t == "*":
		return indexKey{kind: patternSuffix, action: a}
	default: // p == typ only if both halves are equal
		return indexKey{kind: patternExact, typ: t, action: a}
	}
}

// typeKeys are the keys of the patterns that match an event type.
func typeKeys(typ string) [4]indexKey {
	t, a, _ := strings.Cut(typ, ".")
	return [4]indexKey{{kind: patternAll}, {kind: patternPrefix, typ: t}, {kind: patternSuffix, action: a}, {kind: patternExact, typ: t, action: a}}
}

// indexKeys calls f with every key of an endpoint (none when disabled).
func indexKeys(e Endpoint, f func(indexKey)) {
	if !e.Enabled || e.deleted {
		return // matches nothing (Endpoint.Matches)
	}
	for _, p := range e.Events {
		k := patternKey(p)
		k.tenant = e.Tenant
		if len(e.Parents) == 0 {
			f(k)
			continue
		}
		k.filtered = true
		for _, parent := range e.Parents {
			k.parent = parent
			f(k)
		}
	}
}

func (x endpointIndex) add(e Endpoint) {
	indexKeys(e, func(k indexKey) {
		ids := x[k]
		if ids == nil {
			ids = map[string]struct{}{}
			x[k] = ids
		}
		ids[e.ID] = struct{}{}
	})
}

func (x endpointIndex) remove(e Endpoint) {
	indexKeys(e, func(k indexKey) {
		if ids := x[k]; ids != nil {
			delete(ids, e.ID)
			if len(ids) == 0 {
				delete(x, k)
			}
		}
	})
}

// candidates appends to ids the ids under every key that can match ev,
// unsorted and possibly repeated.
func (x endpointIndex) candidates(ev events.Event, ids []string) []string {
	for _, k := range typeKeys(ev.Type) {
		k.tenant = ev.Tenant
		ids = x.appendIDs(ids, k)
		k.filtered = true
		k.parent = ev.Eventable
		ids = x.appendIDs(ids, k)
		for _, p := range ev.Parents {
			if p != ev.Eventable {
				k.parent = p
				ids = x.appendIDs(ids, k)
			}
		}
	}
	return ids
}

func (x endpointIndex) appendIDs(ids []string, k indexKey) []string {
	for id := range x[k] {
		ids = append(ids, id)
	}
	return ids
}
