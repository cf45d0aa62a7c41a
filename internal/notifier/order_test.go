package notifier

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/pkg/events"
)

// cardEvent is an event on card id (on board b1) by creator.
func cardEvent(id, card, action, creator, particulars string) events.Event {
	e := events.Event{ID: id, Tenant: "acme", Action: action, Eventable: events.Ref{Type: "card", ID: card},
		Creator: events.Ref{Type: "user", ID: creator}, Parents: []events.Ref{board}}
	if particulars != "" {
		e.Particulars = json.RawMessage(particulars)
	}
	return e
}

// commentEvent is a comment on card by creator.
func commentEvent(id, card, creator, particulars string) events.Event {
	e := events.Event{ID: id, Tenant: "acme", Action: "created", Eventable: events.Ref{Type: "comment", ID: id},
		Creator: events.Ref{Type: "user", ID: creator}, Parents: []events.Ref{{Type: "card", ID: card}, board}}
	if particulars != "" {
		e.Particulars = json.RawMessage(particulars)
	}
	return e
}

// commentBurst is n comments by zz on random cards, in batches of 1 to
// maxBatch.
func commentBurst(rng *rand.Rand, n, maxBatch int, cards []string) [][]events.Event {
	var batches [][]events.Event
	for i := 0; i < n; {
		var batch []events.Event
		for range 1 + rng.IntN(maxBatch) {
			batch = append(batch, commentEvent(fmt.Sprintf("cm%d", i), cards[rng.IntN(len(cards))], "zz", fmt.Sprintf(`{"body":"cm%d"}`, i)))
			i++
		}
		batches = append(batches, batch)
	}
	return batches
}

// lastEventOf returns the id of the last event of user's notification of
// group in tenant ("" when there is none).
func (b *bundle) lastEventOf(t *testing.T, tenant, user string, group events.Ref) string {
	t.Helper()
	var id *string
	err := b.pool.QueryRow(context.Background(), `SELECT last_event->>'id' FROM notify.notifications
		WHERE tenant = $1 AND user_id = $2 AND group_type = $3 AND group_id = $4`, tenant, user, group.Type, group.ID).Scan(&id)
	if err != nil || id == nil {
		return ""
	}
	return *id
}

// TestEventsOfOneBatchSeeEachOther: a card published and closed in one
// atomic append notifies the publisher of the close — the close sees the
// watch the publish created (it did not when the events of a batch were
// applied in concurrent transactions).
func TestEventsOfOneBatchSeeEachOther(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	for i := range 6 {
		x := fmt.Sprintf("x%d", i)
		b.publish(t, cardEvent("pub-"+x, x, "published", "zed1", ""), cardEvent("close-"+x, x, "closed", "yan", ""))
		g := events.Ref{Type: "card", ID: x}
		require.Equal(t, map[string]int{"zed1": 1}, b.unread(t, "acme", g), "try %d", i)
		require.Equal(t, "close-"+x, b.lastEventOf(t, "acme", "zed1", g))
	}

	// The README's burst: a card, a comment mentioning carol, the close.
	c := events.Ref{Type: "card", ID: "c100"}
	b.publish(t, cardEvent("c100-pub", "c100", "published", "alice", ""),
		commentEvent("c100-cm", "c100", "bob", `{"mentioned_user_ids": ["carol"]}`),
		cardEvent("c100-close", "c100", "closed", "bob", ""))
	require.Equal(t, map[string]int{"alice": 2, "carol": 2}, b.unread(t, "acme", c))
	require.Equal(t, "c100-close", b.lastEventOf(t, "acme", "alice", c))
	require.Equal(t, "c100-close", b.lastEventOf(t, "acme", "carol", c))
}

// model is the reference of the order property: the default rules
// applied to one event at a time, in stream order, to in-memory watches
// and inboxes.
type model struct {
	watches map[events.Ref][]string
	inbox   map[[3]string]*modelNote // user, group type, group id
}

type modelNote struct {
	unread    int
	lastEvent string
	read      bool
}

func newModel() *model {
	return &model{watches: map[events.Ref][]string{}, inbox: map[[3]string]*modelNote{}}
}

func (m *model) watchersOf(ref events.Ref) []string { return m.watches[ref] }

func (m *model) watch(ref events.Ref, user string) {
	if !slices.Contains(m.watches[ref], user) {
		m.watches[ref] = append(m.watches[ref], user)
	}
}

func (m *model) apply(e events.Event) {
	e.Type = events.TypeOf(e.Eventable.Type, e.Action)
	r, ok := DefaultRules().Match(e.Type)
	if !ok {
		return
	}
	out := r.Resolve(&e, m)
	for _, u := range out.Watchers {
		m.watch(out.Group, u)
	}
	for _, u := range out.Recipients {
		k := [3]string{u, out.Group.Type, out.Group.ID}
		n := m.inbox[k]
		if n == nil {
			n = &modelNote{}
			m.inbox[k] = n
		}
		n.unread++
		n.lastEvent = e.ID
		n.read = false
	}
}

// propertyOp is one step: an event, or an API call made once every event
// before it is applied (the order of an API call and the stream is what
// the caller waited for).
type propertyOp struct {
	event  *events.Event
	api    string // "unwatch", "read", "read_all"
	user   string
	object events.Ref
}

// genOps makes a random burst over a few cards and users: cards
// published (with assignees), comments (with mentions), assignments,
// mentions, closes, and now and then an unwatch or a read through the API.
func genOps(rng *rand.Rand, tenant string, n int) []propertyOp {
	users := []string{"u0", "u1", "u2", "u3", "u4", "u5"}
	cards := []string{"k0", "k1", "k2", "k3"}
	user := func() string { return users[rng.IntN(len(users))] }
	someUsers := func() string {
		var us []string
		for range rng.IntN(3) {
			if u := user(); !slices.Contains(us, u) {
				us = append(us, strconv.Quote(u))
			}
		}
		return "[" + strings.Join(us, ", ") + "]"
	}
	var ops []propertyOp
	for i := range n {
		id := fmt.Sprintf("%s-e%d", tenant, i)
		card := cards[rng.IntN(len(cards))]
		var e events.Event
		switch k := rng.IntN(20); {
		case k < 4:
			e = cardEvent(id, card, "published", user(), `{"assignee_ids": `+someUsers()+`}`)
		case k < 9:
			e = commentEvent(id, card, user(), `{"mentioned_user_ids": `+someUsers()+`}`)
		case k < 12:
			e = cardEvent(id, card, "assigned", user(), `{"assignee_ids": `+someUsers()+`}`)
		case k < 13:
			e = cardEvent(id, card, "mentioned", user(), `{"mentioned_user_ids": `+someUsers()+`}`)
		case k < 17:
			e = cardEvent(id, card, "closed", user(), "")
		case k < 18:
			ops = append(ops, propertyOp{api: "unwatch", user: user(), object: events.Ref{Type: "card", ID: card}})
			continue
		case k < 19:
			ops = append(ops, propertyOp{api: "read", user: user(), object: events.Ref{Type: "card", ID: card}})
			continue
		default:
			ops = append(ops, propertyOp{api: "read_all", user: user()})
			continue
		}
		e.Tenant = tenant
		ops = append(ops, propertyOp{event: &e})
	}
	return ops
}

// propertySeeds are the seeds of one run: NOTIFIER_PROPERTY_SEEDS
// (comma-separated) to replay a failure, else three new ones.
func propertySeeds(t *testing.T) []uint64 {
	if s := os.Getenv("NOTIFIER_PROPERTY_SEEDS"); s != "" {
		var out []uint64
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			require.NoError(t, err, "NOTIFIER_PROPERTY_SEEDS")
			out = append(out, n)
		}
		return out
	}
	base := uint64(time.Now().UnixNano())
	return []uint64{base, base + 1, base + 2}
}

// TestOrderProperty: random bursts of events over a few cards and users,
// appended in random batchings (single appends and atomic batches of
// random sizes, from concurrent appenders), give exactly the inboxes,
// unread counts, last events and watches of a pure model that applies the
// same events one at a time in stream order (the default rules through
// Rule.Resolve, on in-memory watches). Each seed runs in a tenant of its
// own; a failure names its seed (replay it with
// NOTIFIER_PROPERTY_SEEDS=<seed>).
//
// It runs twice: with the default batches, and with batches of three
// events, three transactions at a time, so that batches run side by side
// and must wait for the ones they depend on.
func TestOrderProperty(t *testing.T) {
	t.Parallel()
	for _, v := range []struct {
		name string
		cfg  Config
	}{{"batch=500", Config{}}, {"batch=3,inflight=3", Config{Batch: 3, Inflight: 3}}} {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, options{cfg: v.cfg})
			for i, seed := range propertySeeds(t) {
				t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
					tenant := fmt.Sprintf("prop%d", i)
					runOrderProperty(t, b, tenant, seed)
				})
			}
		})
	}
}

func runOrderProperty(t *testing.T, b *bundle, tenant string, seed uint64) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	_, key, err := apikey.NewStore(b.pool, 0).Create(ctx, apikey.CreateParams{Tenant: tenant, Scopes: []string{apikey.ScopeAdmin}})
	require.NoError(t, err)
	b.keys[tenant+"-admin"] = key
	m := newModel()
	// Some users watch the board first.
	for _, u := range []string{"u0", "u3"} {
		b.watch(t, tenant, "board", "b1", u)
		m.watch(board, u)
	}
	ops := genOps(rng, tenant, 40+rng.IntN(80))
	for len(ops) > 0 {
		// The events up to the next API call, appended in random chunks by
		// up to three concurrent appenders; the model applies them in the
		// order of the sequences the stream gave them.
		var burst []events.Event
		for len(ops) > 0 && ops[0].event != nil {
			burst = append(burst, *ops[0].event)
			ops = ops[1:]
		}
		var chunks [][]events.Event
		for rest := burst; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(8))
			if rng.IntN(3) == 0 {
				n = 1
			}
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		seqs := b.appendConcurrently(t, chunks, 1+rng.IntN(3))
		require.Len(t, seqs, len(burst), "seed %d: every event appended", seed)
		sort.SliceStable(burst, func(i, j int) bool { return seqs[burst[i].ID] < seqs[burst[j].ID] })
		for _, e := range burst {
			m.apply(e)
		}
		b.waitProcessed(t)
		if len(ops) == 0 {
			break
		}
		op := ops[0]
		ops = ops[1:]
		switch op.api {
		case "unwatch":
			code, body := b.call(t, tenant+"-admin", "DELETE", "/v1/watches/card/"+op.object.ID+"/users/"+op.user, nil)
			require.Equal(t, http.StatusNoContent, code, "%v", body)
			m.watches[op.object] = slices.DeleteFunc(m.watches[op.object], func(u string) bool { return u == op.user })
		case "read":
			var id int64
			err := b.pool.QueryRow(ctx, `SELECT id FROM notify.notifications WHERE tenant = $1 AND user_id = $2 AND group_type = 'card' AND group_id = $3`,
				tenant, op.user, op.object.ID).Scan(&id)
			if err != nil {
				continue // no notification to read
			}
			code, body := b.call(t, tenant+"-admin", "POST", fmt.Sprintf("/v1/users/%s/notifications/%d/read", op.user, id), nil)
			require.Equal(t, http.StatusOK, code, "%v", body)
			n := m.inbox[[3]string{op.user, "card", op.object.ID}]
			require.NotNil(t, n, "seed %d: %s has a notification of card %s the model does not", seed, op.user, op.object.ID)
			n.unread, n.read = 0, true
		case "read_all":
			code, body := b.call(t, tenant+"-admin", "POST", "/v1/users/"+op.user+"/notifications/read-all", nil)
			require.Equal(t, http.StatusOK, code, "%v", body)
			for k, n := range m.inbox {
				if k[0] == op.user {
					n.unread, n.read = 0, true
				}
			}
		}
	}
	checkAgainstModel(t, b, tenant, seed, m)
}

// assertNoErr reports err as a test failure from any goroutine.
func assertNoErr(t *testing.T, err error) bool {
	if err != nil {
		t.Errorf("%v", err)
		return false
	}
	return true
}

// checkAgainstModel compares the tenant's inboxes, unread totals and
// watches with the model's.
func checkAgainstModel(t *testing.T, b *bundle, tenant string, seed uint64, m *model) {
	t.Helper()
	ctx := context.Background()
	type note struct {
		Unread    int
		LastEvent string
		Read      bool
	}
	want, got := map[[3]string]note{}, map[[3]string]note{}
	wantTotals, gotTotals, counted := map[string]int{}, map[string]int{}, map[string]int{}
	for k, n := range m.inbox {
		want[k] = note{n.unread, n.lastEvent, n.read}
		if !n.read {
			wantTotals[k[0]]++
		}
	}
	rows, err := b.pool.Query(ctx, `SELECT user_id, group_type, group_id, unread_count, last_event->>'id', read_at IS NOT NULL
		FROM notify.notifications WHERE tenant = $1`, tenant)
	require.NoError(t, err)
	defer rows.Close() // also when an assertion below stops the test
	for rows.Next() {
		var k [3]string
		var n note
		require.NoError(t, rows.Scan(&k[0], &k[1], &k[2], &n.Unread, &n.LastEvent, &n.Read))
		got[k] = n
		if !n.Read {
			counted[k[0]]++
		}
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, want, "seed %d: the burst notifies someone", seed)
	require.Equal(t, want, got, "seed %d: inboxes (user, group) -> unread, last event, read", seed)
	require.Equal(t, wantTotals, counted, "seed %d: unread notifications per user", seed)
	rows, err = b.pool.Query(ctx, `SELECT user_id, unread_total FROM notify.inboxes WHERE tenant = $1 AND unread_total > 0`, tenant)
	require.NoError(t, err)
	defer rows.Close() // also when an assertion below stops the test
	for rows.Next() {
		var u string
		var n int
		require.NoError(t, rows.Scan(&u, &n))
		gotTotals[u] = n
	}
	require.NoError(t, rows.Err())
	require.Equal(t, wantTotals, gotTotals, "seed %d: unread totals kept with the inboxes", seed)
	for u, n := range wantTotals {
		code, body := b.call(t, tenant+"-admin", "GET", "/v1/users/"+u+"/notifications?status=unread&limit=1", nil)
		require.Equal(t, http.StatusOK, code)
		require.EqualValues(t, n, body["unread_total"], "seed %d: %s's unread_total in the API", seed, u)
	}
	wantWatches, gotWatches := map[string]bool{}, map[string]bool{}
	for ref, us := range m.watches {
		for _, u := range us {
			wantWatches[ref.Type+"/"+ref.ID+"/"+u] = true
		}
	}
	rows, err = b.pool.Query(ctx, `SELECT object_type || '/' || object_id || '/' || user_id FROM notify.watches WHERE tenant = $1`, tenant)
	require.NoError(t, err)
	defer rows.Close() // also when an assertion below stops the test
	for rows.Next() {
		var w string
		require.NoError(t, rows.Scan(&w))
		gotWatches[w] = true
	}
	require.NoError(t, rows.Err())
	require.Equal(t, wantWatches, gotWatches, "seed %d: watches", seed)
}
