package endpoint

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/pkg/events"
)

// registryModel is what the registry must hold: every endpoint, matched by
// a scan over Endpoint.Matches.
type registryModel map[string]Endpoint

func (m registryModel) match(ev events.Event) []Endpoint {
	var out []Endpoint
	for _, e := range m {
		if e.Tenant == ev.Tenant && e.Matches(ev) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Endpoint) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Small alphabets so that random endpoints and events often meet,
// including patterns and types validation would refuse (the index must
// agree with matchPattern on any string).
var (
	randTenants  = []string{"acme", "globex", "initech"}
	randTypes    = []string{"card", "comment", "board", "x", "", "*"}
	randActions  = []string{"closed", "created", "moved", "", "*", "a.b"}
	randPatterns = []string{"*", "*.*", "card", "card.", "*.", ".closed", "card.closed.x", "**", "*x.closed"}
	randRefs     = []events.Ref{{}, {Type: "board", ID: "b1"}, {Type: "board", ID: "b2"}, {Type: "card", ID: "c1"}, {Type: "card", ID: "c2"}, {Type: "project", ID: "p1"}}
)

func randPattern(rnd *rand.Rand) string {
	if rnd.IntN(5) == 0 {
		return randPatterns[rnd.IntN(len(randPatterns))]
	}
	return randTypes[rnd.IntN(len(randTypes))] + "." + randActions[rnd.IntN(len(randActions))]
}

func randRefList(rnd *rand.Rand, maxLen int) []events.Ref {
	n := rnd.IntN(maxLen + 1)
	if n == 0 {
		return nil
	}
	out := make([]events.Ref, n)
	for i := range out {
		out[i] = randRefs[rnd.IntN(len(randRefs))]
	}
	return out
}

func randEndpoint(rnd *rand.Rand, id string, seq int64) Endpoint {
	e := Endpoint{ID: id, Tenant: randTenants[rnd.IntN(len(randTenants))], Enabled: rnd.IntN(5) != 0, changeSeq: seq}
	for range 1 + rnd.IntN(3) {
		e.Events = append(e.Events, randPattern(rnd))
	}
	if rnd.IntN(2) == 0 {
		e.Parents = randRefList(rnd, 3)
	}
	return e
}

func randEvent(rnd *rand.Rand) events.Event {
	ev := events.Event{Tenant: randTenants[rnd.IntN(len(randTenants))], Eventable: randRefs[rnd.IntN(len(randRefs))], Parents: randRefList(rnd, 3)}
	switch rnd.IntN(10) {
	case 0:
		ev.Type = TestEventType
	case 1:
		ev.Type = randPatterns[rnd.IntN(len(randPatterns))] // odd types too
	default:
		ev.Type = randTypes[rnd.IntN(len(randTypes))] + "." + randActions[rnd.IntN(len(randActions))]
	}
	return ev
}

// TestRegistryMatchEqualsScan: after every batch of random creates,
// changes (patterns, parents, enabled, even tenant) and deletes, the
// indexed Match returns exactly what a scan over Endpoint.Matches returns,
// in id order; once everything is deleted the index is empty.
func TestRegistryMatchEqualsScan(t *testing.T) {
	t.Parallel()
	for seed := range uint64(20) {
		rnd := rand.New(rand.NewPCG(seed, 1))
		r := NewRegistry(nil, 0, nil)
		model := registryModel{}
		var seq int64
		for range 30 {
			var batch []Endpoint
			for range rnd.IntN(40) {
				seq++
				id := fmt.Sprintf("ep-%03d", rnd.IntN(150))
				if old, ok := model[id]; ok && rnd.IntN(4) == 0 {
					old.deleted, old.changeSeq = true, seq
					batch = append(batch, old)
					delete(model, id)
					continue
				}
				if rnd.IntN(8) == 0 { // a deletion of an id never seen or already gone
					batch = append(batch, Endpoint{ID: id, Tenant: "acme", deleted: true, changeSeq: seq})
					delete(model, id)
					continue
				}
				e := randEndpoint(rnd, id, seq)
				batch = append(batch, e)
				model[id] = e
			}
			r.apply(batch)
			r.apply(batch) // read again (Store.changedSince): changes nothing
			require.Len(t, r.byID, len(model))
			for range 200 {
				ev := randEvent(rnd)
				require.Equal(t, model.match(ev), r.Match(ev), "seed %d, event %+v", seed, ev)
			}
			for id, e := range model {
				got, ok := r.Get(id)
				require.True(t, ok)
				require.Equal(t, e, got)
			}
		}
		var gone []Endpoint
		for _, e := range model {
			seq++
			e.deleted, e.changeSeq = true, seq
			gone = append(gone, e)
		}
		r.apply(gone)
		require.Empty(t, r.byID)
		require.Empty(t, r.index, "no key left behind")
	}
}

// TestRegistryIndexKeysMatchPattern: a pattern's index key is among an
// event type's keys exactly when matchPattern says it matches.
func TestRegistryIndexKeysMatchPattern(t *testing.T) {
	t.Parallel()
	parts := []string{"", "*", "card", "closed", "a.b", "*.*", "**", "card.closed"}
	var strs []string
	for _, a := range parts {
		strs = append(strs, a)
		for _, b := range parts {
			strs = append(strs, a+"."+b)
		}
	}
	for _, p := range strs {
		for _, typ := range strs {
			keys := typeKeys(typ)
			require.Equal(t, matchPattern(p, typ), slices.Contains(keys[:], patternKey(p)), "%q vs %q", p, typ)
		}
	}
}
