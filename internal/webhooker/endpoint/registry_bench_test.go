package endpoint

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/eventline/eventline/pkg/events"
)

// The registry benchmarks (make bench-registry) start nothing: they feed
// Registry.apply the batch Refresh would read from Postgres. Each has a raw
// baseline in the same run (a plain map of the same endpoints) and the
// registry before its index (oldRegistry), where that finishes in seconds.

// benchEvent is matched by exactly one endpoint of benchEndpoints.
var benchEvent = events.Event{Tenant: "acme", Type: "card.closed", Action: "closed", Eventable: events.Ref{Type: "card", ID: "c1"},
	Parents: []events.Ref{{Type: "board", ID: "b-none"}, {Type: "project", ID: "p-none"}}}

// benchEndpoints returns n endpoints of one tenant subscribed to a mix of
// exact, "t.*", "*.a" and "*" patterns, a third with a parents filter,
// some disabled; the one in the middle alone wants benchEvent.
func benchEndpoints(n int) []Endpoint {
	out := make([]Endpoint, n)
	for i := range out {
		e := Endpoint{Tenant: "acme", ID: fmt.Sprintf("ep-%07d", i), URL: "https://example.com/hook/" + strconv.Itoa(i), Enabled: true, changeSeq: int64(i + 1)}
		t, a := "t"+strconv.Itoa(i%5000), "a"+strconv.Itoa(i%13)
		switch i % 10 {
		case 0, 1, 2, 3:
			e.Events = []string{t + "." + a}
		case 4, 5:
			e.Events = []string{t + ".*"}
		case 6:
			e.Events = []string{"*." + a}
		case 7, 8:
			e.Events = []string{"card.*"}
			e.Parents = []events.Ref{{Type: "board", ID: "b" + strconv.Itoa(i)}}
		case 9:
			e.Events = []string{"*"}
			e.Parents = []events.Ref{{Type: "project", ID: "p" + strconv.Itoa(i)}}
			e.Enabled = i%20 == 9 // half of these disabled
		}
		out[i] = e
	}
	out[n/2].Events, out[n/2].Parents = []string{"card.closed"}, nil
	return out
}

func BenchmarkRegistryLoad(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		eps := benchEndpoints(n)
		b.Run(fmt.Sprintf("raw-map/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m := map[string]Endpoint{}
				for _, e := range eps {
					m[e.ID] = e
				}
			}
		})
		b.Run(fmt.Sprintf("indexed/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				NewRegistry(nil, 0, nil).apply(eps)
			}
		})
		if n <= 10_000 { // quadratic: 100,000 would take minutes
			b.Run(fmt.Sprintf("old/%d", n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					newOldRegistry().apply(eps)
				}
			})
		}
	}
}

func BenchmarkRegistryMatch(b *testing.B) {
	const n = 100_000
	eps := benchEndpoints(n)
	b.Run(fmt.Sprintf("raw-lookup/%d", n), func(b *testing.B) {
		m := map[string]Endpoint{}
		for _, e := range eps {
			m[e.ID] = e
		}
		id := eps[n/2].ID
		for b.Loop() {
			if _, ok := m[id]; !ok {
				b.Fatal("missing")
			}
		}
	})
	b.Run(fmt.Sprintf("indexed/%d", n), func(b *testing.B) {
		b.ReportAllocs()
		r := NewRegistry(nil, 0, nil)
		r.apply(eps)
		for b.Loop() {
			if got := r.Match(benchEvent); len(got) != 1 {
				b.Fatalf("%d matches, want 1", len(got))
			}
		}
	})
	b.Run(fmt.Sprintf("old/%d", n), func(b *testing.B) {
		b.ReportAllocs()
		r := newOldRegistry()
		for _, e := range eps { // not apply: its quadratic load is not what this measures
			r.byID[e.ID] = e
			r.byTenant[e.Tenant] = append(r.byTenant[e.Tenant], e.ID)
		}
		for b.Loop() {
			if got := r.Match(benchEvent); len(got) != 1 {
				b.Fatalf("%d matches, want 1", len(got))
			}
		}
	})
}

// BenchmarkRegistryChange: one endpoint created and deleted in a registry
// holding 100,000 of its tenant's (two changes per op).
func BenchmarkRegistryChange(b *testing.B) {
	const n = 100_000
	eps := benchEndpoints(n)
	e := Endpoint{Tenant: "acme", ID: "ep-new", Events: []string{"card.*"}, Enabled: true}
	gone := e
	gone.deleted = true
	b.Run(fmt.Sprintf("raw-map/%d", n), func(b *testing.B) {
		m := map[string]Endpoint{}
		for _, e := range eps {
			m[e.ID] = e
		}
		for b.Loop() {
			m[e.ID] = e
			delete(m, e.ID)
		}
	})
	b.Run(fmt.Sprintf("indexed/%d", n), func(b *testing.B) {
		b.ReportAllocs()
		r := NewRegistry(nil, 0, nil)
		r.apply(eps)
		for b.Loop() {
			r.apply([]Endpoint{e})
			r.apply([]Endpoint{gone})
		}
	})
	b.Run(fmt.Sprintf("old/%d", n), func(b *testing.B) {
		b.ReportAllocs()
		r := newOldRegistry()
		for _, e := range eps {
			r.byID[e.ID] = e
			r.byTenant[e.Tenant] = append(r.byTenant[e.Tenant], e.ID)
		}
		for b.Loop() {
			r.apply([]Endpoint{e})
			r.apply([]Endpoint{gone})
		}
	})
}

// oldRegistry is the registry before its index, for comparison only: every
// new or deleted endpoint rebuilt its tenant's id list, and Match scanned
// the tenant's endpoints.
type oldRegistry struct {
	byID     map[string]Endpoint
	byTenant map[string][]string
	lastSeq  int64
}

func newOldRegistry() *oldRegistry {
	return &oldRegistry{byID: map[string]Endpoint{}, byTenant: map[string][]string{}}
}

func (r *oldRegistry) apply(changed []Endpoint) {
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
}

func (r *oldRegistry) rebuildTenant(tenant string) {
	var ids []string
	for id, e := range r.byID {
		if e.Tenant == tenant {
			ids = append(ids, id)
		}
	}
	r.byTenant[tenant] = ids
}

func (r *oldRegistry) Match(ev events.Event) []Endpoint {
	var out []Endpoint
	for _, id := range r.byTenant[ev.Tenant] {
		if e := r.byID[id]; e.Matches(ev) {
			out = append(out, e)
		}
	}
	return out
}
