package notifier

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/pkg/events"
)

// notifyChannel is the Postgres NOTIFY channel of inbox changes; payloads
// are JSON arrays of Change.
const notifyChannel = "eventline_notify"

// maxNotifyPayload keeps a NOTIFY payload under Postgres's 8000-byte limit.
const maxNotifyPayload = 7000

// Change is one inbox change, as published to SSE subscribers.
type Change struct {
	Kind         string      `json:"kind"` // "notification", "read", "read_all"
	Tenant       string      `json:"tenant,omitempty"`
	UserID       string      `json:"user_id"`
	ID           string      `json:"id,omitempty"`
	Group        *events.Ref `json:"group,omitempty"`
	UnreadCount  int         `json:"unread_count"`
	UpdatedAt    time.Time   `json:"updated_at"`
	LastEventID  string      `json:"last_event_id,omitempty"`
	LastEventTyp string      `json:"last_event_type,omitempty"`
	// Seq is the user's inbox sequence of the change, its SSE id: every
	// change to one user's inbox takes the next value in the transaction
	// that makes it, so they commit in Seq order. A read_all covers every
	// notification it read, with the Seqs up to this one.
	Seq int64 `json:"seq"`
	// UnreadTotal is the user's number of unread notifications after the
	// change.
	UnreadTotal int `json:"unread_total"`
}

// applyResult is what applying a batch did.
type applyResult struct {
	applied, duplicates, notifications int
}

// writer applies batches of events to the inbox in one transaction each.
type writer struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

type groupKey struct{ tenant, user, gtype, gid string }

type userKey struct{ tenant, user string }

type bump struct {
	count             int
	seq               uint64
	event             []byte
	eventID, eventTyp string
	back              int // this group's place among its user's bumps, from the last (0)
}

type watchKey struct {
	tenant string
	ref    events.Ref
}

// watcherSet is the watchers of the objects a batch touches, updated as
// the batch's own events add watches (in stream order).
type watcherSet struct {
	tenant string
	m      map[watchKey][]string
}

func (w *watcherSet) watchersOf(ref events.Ref) []string { return w.m[watchKey{w.tenant, ref}] }

// gate orders a transaction of the commit pipeline after the batches
// still running before it (see pipeline.go). A transaction on its own
// (a replayed dead letter) has none.
type gate interface {
	// admit records what the batch reads (whose watchers) and writes
	// (watches and notifications of these groups), then blocks until no
	// earlier batch still running writes any of them.
	admit(ctx context.Context, reads, writes map[watchKey]bool) error
	// lockUsers records whose inboxes the batch changes, then blocks until
	// no earlier batch still running changes one of them.
	lockUsers(ctx context.Context, users map[userKey]bool) error
}

// apply writes the inbox effects of evs in one transaction of their own:
// the de-duplication keys, new watches, the notification upserts, the
// digests to schedule and the NOTIFY of every change. Events already
// applied (a redelivery) change nothing.
func (w *writer) apply(ctx context.Context, evs []*events.Event) (applyResult, error) {
	return w.applyWith(ctx, evs, nil, nil, nil)
}

// firstFunc queues statements of the caller into the transaction's first
// round trip (when there are events to apply) and returns what reads
// their results, or nil when it queued none.
type firstFunc func(*pgx.Batch) func(pgx.BatchResults) error

// applyWith is apply ordered by g (when not nil), with first (when not
// nil) joining the transaction's first round trip and also run last in
// the same transaction.
func (w *writer) applyWith(ctx context.Context, evs []*events.Event, g gate, first firstFunc, also func(pgx.Tx) error) (applyResult, error) {
	var res applyResult
	now := w.now().UTC().Truncate(time.Microsecond)
	// One copy of each event id, in stream order.
	slices.SortFunc(evs, func(a, b *events.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	seen := map[[2]string]bool{}
	uniq := evs[:0:0]
	for _, e := range evs {
		k := [2]string{e.Tenant, e.ID}
		if seen[k] {
			res.duplicates++
			continue
		}
		seen[k] = true
		uniq = append(uniq, e)
	}
	dups := res.duplicates
	err := postgres.InTx(ctx, w.pool, func(tx pgx.Tx) error {
		res = applyResult{duplicates: dups}
		if err := w.applyTx(ctx, tx, uniq, now, &res, g, first); err != nil {
			return err
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
	if err != nil {
		return applyResult{}, err
	}
	return res, nil
}

// applyTx writes the effects of uniq (one copy of each event, in stream
// order) in tx. Every event sees the watches of the events before it:
// those committed (an earlier batch touching the same objects has
// committed before g admits this one) and those of this batch (threaded
// through in stream order).
func (w *writer) applyTx(ctx context.Context, tx pgx.Tx, uniq []*events.Event, now time.Time, res *applyResult, g gate, first firstFunc) error {
	// One round trip: the caller's first statements, the de-duplication
	// keys and the tenants' rules.
	var fresh []*events.Event
	var rules map[string]Rules
	if len(uniq) > 0 {
		batch := &pgx.Batch{}
		var readFirst func(pgx.BatchResults) error
		if first != nil {
			readFirst = first(batch)
		}
		queueClaim(batch, uniq)
		queueRules(batch, uniq)
		br := tx.SendBatch(ctx, batch)
		var err error
		if readFirst != nil {
			err = readFirst(br)
		}
		if err == nil {
			fresh, err = readClaim(br, uniq)
		}
		if err == nil {
			rules, err = readRules(br, uniq)
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	res.duplicates += len(uniq) - len(fresh)
	res.applied = len(fresh)
	// Which rule applies to each event, whose watchers it reads and which
	// group it writes.
	matched := make([]*Rule, len(fresh))
	reads, writes := map[watchKey]bool{}, map[watchKey]bool{}
	for i, e := range fresh {
		r, ok := rules[e.Tenant].Match(e.Type)
		if !ok {
			continue
		}
		matched[i] = &r
		for _, ref := range append(r.Notify.objects(e), r.Watch.objects(e)...) {
			reads[watchKey{e.Tenant, ref}] = true
		}
		gk := watchKey{e.Tenant, r.group(e)}
		reads[gk], writes[gk] = true, true
	}
	if g != nil {
		if err := g.admit(ctx, reads, writes); err != nil {
			return err
		}
	}
	ws, err := loadWatchers(ctx, tx, reads)
	if err != nil {
		return err
	}
	bumps := map[groupKey]*bump{}
	newWatches := map[watchKey][]string{}
	for i, e := range fresh {
		r := matched[i]
		if r == nil {
			continue
		}
		set := &watcherSet{tenant: e.Tenant, m: ws}
		out := r.Resolve(e, set)
		gk := watchKey{e.Tenant, out.Group}
		for _, u := range out.Watchers {
			if !slices.Contains(ws[gk], u) {
				ws[gk] = append(ws[gk], u)
				newWatches[gk] = append(newWatches[gk], u)
			}
		}
		if len(out.Recipients) == 0 {
			continue
		}
		body, err := json.Marshal(e)
		if err != nil {
			return markPermanent(fmt.Errorf("encode event %s: %w", e.ID, err))
		}
		for _, u := range out.Recipients {
			k := groupKey{e.Tenant, u, out.Group.Type, out.Group.ID}
			b := bumps[k]
			if b == nil {
				b = &bump{}
				bumps[k] = b
			}
			b.count++
			if e.Seq >= b.seq {
				b.seq, b.event, b.eventID, b.eventTyp = e.Seq, body, e.ID, e.Type
			}
		}
	}
	users := numberBumps(bumps)
	if g != nil {
		if err := g.lockUsers(ctx, users); err != nil {
			return err
		}
	}
	if len(newWatches) == 0 && len(bumps) == 0 {
		return nil
	}
	// One round trip: the new watches, the inbox sequences (each changed
	// inbox's row is locked here, first) and the notification upsert.
	batch := &pgx.Batch{}
	queueWatches(batch, newWatches, now)
	upsert := queueUpsert(batch, bumps, users, now)
	br := tx.SendBatch(ctx, batch)
	if len(newWatches) > 0 {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return fmt.Errorf("insert watches: %w", err)
		}
	}
	var changes []Change
	var totals map[userKey]int
	if upsert {
		totals, err = readTotals(br)
		if err == nil {
			changes, err = readUpsert(br, bumps)
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	res.notifications = len(bumps)
	// One round trip: the unread totals, the NOTIFY of the changes and who
	// wants digests.
	batch = &pgx.Batch{}
	queueTotals(batch, changes, bumps, totals)
	if err := queueChanges(batch, changes); err != nil {
		return err
	}
	return scheduleDigests(ctx, tx, batch, changes, now)
}

// readTotals reads the unread totals of the users bumpInboxesSQL locked,
// before this transaction's changes.
func readTotals(br pgx.BatchResults) (map[userKey]int, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("advance inbox sequences: %w", err)
	}
	totals := map[userKey]int{}
	for rows.Next() {
		var u userKey
		var n int
		if err := rows.Scan(&u.tenant, &u.user, &n); err != nil {
			rows.Close()
			return nil, err
		}
		totals[u] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("advance inbox sequences: %w", err)
	}
	return totals, nil
}

// queueTotals sets each change's UnreadTotal (the user's total once it is
// made, in sequence order) and queues the update of the totals that
// changed. A
// notification became unread when its unread_count is just this
// transaction's bump: a read one has 0, an unread one more.
func queueTotals(b *pgx.Batch, changes []Change, bumps map[groupKey]*bump, totals map[userKey]int) {
	// changes are in (tenant, user, seq) order.
	var tenants, users []string
	var added []int32
	became := 0
	for i, c := range changes {
		u := userKey{c.Tenant, c.UserID}
		if bu := bumps[groupKey{c.Tenant, c.UserID, c.Group.Type, c.Group.ID}]; bu != nil && c.UnreadCount == bu.count {
			totals[u]++
			became++
		}
		changes[i].UnreadTotal = totals[u]
		if i == len(changes)-1 || changes[i+1].Tenant != c.Tenant || changes[i+1].UserID != c.UserID {
			if became > 0 {
				tenants, users, added = append(tenants, u.tenant), append(users, u.user), append(added, int32(totals[u]))
			}
			became = 0
		}
	}
	if len(tenants) == 0 {
		return
	}
	b.Queue(`UPDATE notify.inboxes i SET unread_total = x.n FROM unnest($1::text[], $2::text[], $3::int[]) AS x(t, u, n)
		WHERE i.tenant = x.t AND i.user_id = x.u`, tenants, users, added)
}

// numberBumps places each user's bumped groups in stream order (of the
// last event bumping each) and returns the users and how many groups each
// has: the inbox sequences they take, in that order.
func numberBumps(bumps map[groupKey]*bump) map[userKey]bool {
	per := map[userKey][]*bump{}
	for k, b := range bumps {
		u := userKey{k.tenant, k.user}
		per[u] = append(per[u], b)
	}
	users := make(map[userKey]bool, len(per))
	for u, bs := range per {
		users[u] = true
		slices.SortFunc(bs, func(a, b *bump) int { return cmp.Compare(b.seq, a.seq) }) // newest first
		for i, b := range bs {
			b.back = i
		}
	}
	return users
}

// queueClaim records the de-duplication key of each event.
func queueClaim(b *pgx.Batch, evs []*events.Event) {
	tenants, ids := make([]string, len(evs)), make([]string, len(evs))
	for i, e := range evs {
		tenants[i], ids[i] = e.Tenant, e.ID
	}
	b.Queue(`INSERT INTO notify.processed (tenant, event_id)
		SELECT * FROM unnest($1::text[], $2::text[]) ORDER BY 1, 2
		ON CONFLICT DO NOTHING RETURNING tenant, event_id`, tenants, ids)
}

// readClaim returns the events not applied before.
func readClaim(br pgx.BatchResults, evs []*events.Event) ([]*events.Event, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("record processed events: %w", err)
	}
	fresh := map[[2]string]bool{}
	for rows.Next() {
		var k [2]string
		if err := rows.Scan(&k[0], &k[1]); err != nil {
			rows.Close()
			return nil, err
		}
		fresh[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("record processed events: %w", err)
	}
	out := evs[:0:0]
	for _, e := range evs {
		if fresh[[2]string{e.Tenant, e.ID}] {
			out = append(out, e)
		}
	}
	return out, nil
}

func tenantsOf(evs []*events.Event) []string {
	var tenants []string
	for _, e := range evs {
		if !slices.Contains(tenants, e.Tenant) {
			tenants = append(tenants, e.Tenant)
		}
	}
	return tenants
}

// queueRules reads the stored rules of every tenant in evs.
func queueRules(b *pgx.Batch, evs []*events.Event) {
	b.Queue(`SELECT tenant, rules FROM notify.rules WHERE tenant = ANY($1)`, tenantsOf(evs))
}

// readRules returns the rules of every tenant in evs (the defaults when a
// tenant has none).
func readRules(br pgx.BatchResults, evs []*events.Event) (map[string]Rules, error) {
	out := map[string]Rules{}
	for _, t := range tenantsOf(evs) {
		out[t] = DefaultRules()
	}
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t string
		var raw []byte
		if err := rows.Scan(&t, &raw); err != nil {
			return nil, err
		}
		rs, err := ParseRules(raw)
		if err != nil {
			return nil, fmt.Errorf("stored rules of tenant %s: %w", t, err)
		}
		out[t] = rs
	}
	return out, rows.Err()
}

func loadWatchers(ctx context.Context, tx pgx.Tx, need map[watchKey]bool) (map[watchKey][]string, error) {
	out := map[watchKey][]string{}
	if len(need) == 0 {
		return out, nil
	}
	var tenants, types, ids []string
	for k := range need {
		tenants, types, ids = append(tenants, k.tenant), append(types, k.ref.Type), append(ids, k.ref.ID)
	}
	rows, err := tx.Query(ctx, `SELECT w.tenant, w.object_type, w.object_id, w.user_id
		FROM unnest($1::text[], $2::text[], $3::text[]) AS o(tenant, object_type, object_id)
		JOIN notify.watches w ON w.tenant = o.tenant AND w.object_type = o.object_type AND w.object_id = o.object_id
		ORDER BY w.created_at, w.user_id`, tenants, types, ids)
	if err != nil {
		return nil, fmt.Errorf("load watchers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k watchKey
		var u string
		if err := rows.Scan(&k.tenant, &k.ref.Type, &k.ref.ID, &u); err != nil {
			return nil, err
		}
		out[k] = append(out[k], u)
	}
	return out, rows.Err()
}

func queueWatches(b *pgx.Batch, add map[watchKey][]string, now time.Time) {
	if len(add) == 0 {
		return
	}
	var tenants, types, ids, users []string
	for k, us := range add {
		for _, u := range us {
			tenants, types, ids, users = append(tenants, k.tenant), append(types, k.ref.Type), append(ids, k.ref.ID), append(users, u)
		}
	}
	b.Queue(`INSERT INTO notify.watches (tenant, object_type, object_id, user_id, created_at)
		SELECT t, ot, oi, u, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS x(t, ot, oi, u) ORDER BY 1, 2, 3, 4
		ON CONFLICT DO NOTHING`, tenants, types, ids, users, now)
}

// queueUpsert advances the inbox sequence of every user with bumps (in key
// order: their rows are the locks every inbox change takes first), then
// bumps one notification per (tenant, user, group), each taking its
// sequence, and keeps the users' unread totals. It queues nothing (and
// returns false) without bumps.
func queueUpsert(b *pgx.Batch, bumps map[groupKey]*bump, users map[userKey]bool, now time.Time) bool {
	if len(bumps) == 0 {
		return false
	}
	perUser := map[userKey]int64{}
	for k := range bumps {
		perUser[userKey{k.tenant, k.user}]++
	}
	us := make([]userKey, 0, len(users))
	for u := range users {
		us = append(us, u)
	}
	slices.SortFunc(us, func(a, b userKey) int {
		return cmp.Or(strings.Compare(a.tenant, b.tenant), strings.Compare(a.user, b.user))
	})
	ut, uu, un := make([]string, len(us)), make([]string, len(us)), make([]int64, len(us))
	for i, u := range us {
		ut[i], uu[i], un[i] = u.tenant, u.user, perUser[u]
	}
	b.Queue(bumpInboxesSQL, ut, uu, un)

	keys := make([]groupKey, 0, len(bumps))
	for k := range bumps {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b groupKey) int {
		return cmp.Or(strings.Compare(a.tenant, b.tenant), strings.Compare(a.user, b.user), strings.Compare(a.gtype, b.gtype), strings.Compare(a.gid, b.gid))
	})
	n := len(keys)
	tenants, userIDs, gtypes, gids, bodies := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	counts, backs := make([]int32, n), make([]int32, n)
	for i, k := range keys {
		bu := bumps[k]
		tenants[i], userIDs[i], gtypes[i], gids[i], counts[i], bodies[i], backs[i] = k.tenant, k.user, k.gtype, k.gid, int32(bu.count), string(bu.event), int32(bu.back)
	}
	b.Queue(upsertSQL, tenants, userIDs, gtypes, gids, counts, bodies, backs, now)
	return true
}

// bumpInboxesSQL takes the next n sequences of each user's inbox, creating
// the inbox on its first notification, and returns the users' unread
// totals. It locks the users' inbox rows, first: every writer of a user's
// notifications holds that lock, so they cannot change under this
// transaction.
const bumpInboxesSQL = `INSERT INTO notify.inboxes AS i (tenant, user_id, seq, unread_total)
	SELECT t, u, n, 0 FROM unnest($1::text[], $2::text[], $3::bigint[]) AS x(t, u, n) ORDER BY 1, 2
	ON CONFLICT (tenant, user_id) DO UPDATE SET seq = i.seq + excluded.seq
	RETURNING tenant, user_id, unread_total`

// upsertSQL bumps the notifications, a group's change taking its user's
// sequence minus its place from the last, and returns them in (tenant,
// user, sequence) order.
const upsertSQL = `WITH x AS (
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::int[]) AS x(t, u, gt, gi, c, e, back)
	), up AS (
		INSERT INTO notify.notifications AS n (tenant, user_id, group_type, group_id, unread_count, last_event, created_at, updated_at, change_seq)
		SELECT x.t, x.u, x.gt, x.gi, x.c, x.e::jsonb, $8, $8, i.seq - x.back
		FROM x JOIN notify.inboxes i ON i.tenant = x.t AND i.user_id = x.u
		ORDER BY 1, 2, 3, 4
		ON CONFLICT (tenant, user_id, group_type, group_id) DO UPDATE
		SET unread_count = n.unread_count + excluded.unread_count, last_event = excluded.last_event,
		    read_at = NULL, updated_at = excluded.updated_at, change_seq = excluded.change_seq
		RETURNING n.id, n.tenant, n.user_id, n.group_type, n.group_id, n.unread_count, n.updated_at, n.change_seq
	)
	SELECT * FROM up ORDER BY tenant, user_id, change_seq`

// readUpsert returns the inbox changes of the upsert, each user's in
// sequence order.
func readUpsert(br pgx.BatchResults, bumps map[groupKey]*bump) ([]Change, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("upsert notifications: %w", err)
	}
	changes := make([]Change, 0, len(bumps))
	for rows.Next() {
		var c Change
		var g events.Ref
		var id int64
		if err := rows.Scan(&id, &c.Tenant, &c.UserID, &g.Type, &g.ID, &c.UnreadCount, &c.UpdatedAt, &c.Seq); err != nil {
			rows.Close()
			return nil, err
		}
		b := bumps[groupKey{c.Tenant, c.UserID, g.Type, g.ID}]
		c.Kind, c.ID, c.Group = "notification", strconv.FormatInt(id, 10), &g
		if b != nil {
			c.LastEventID, c.LastEventTyp = b.eventID, b.eventTyp
		}
		changes = append(changes, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("upsert notifications: %w", err)
	}
	return changes, nil
}

// publishChanges NOTIFYs the changes inside the writing transaction, so
// listeners in every replica hear of them exactly when they commit.
func publishChanges(ctx context.Context, tx pgx.Tx, changes []Change) error {
	b := &pgx.Batch{}
	if err := queueChanges(b, changes); err != nil {
		return err
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("notify inbox changes: %w", err)
	}
	return nil
}

// queueChanges queues the NOTIFY of changes, in payloads under Postgres's
// limit.
func queueChanges(b *pgx.Batch, changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	var payloads []string
	var buf []byte
	for _, c := range changes {
		js, err := json.Marshal(c)
		if err != nil {
			return err
		}
		if len(buf) > 0 && len(buf)+len(js)+2 > maxNotifyPayload {
			payloads = append(payloads, string(append(buf, ']')))
			buf = nil
		}
		if len(js)+2 > maxNotifyPayload {
			continue // cannot happen with ids of at most 256 bytes
		}
		if len(buf) == 0 {
			buf = append(buf, '[')
		} else {
			buf = append(buf, ',')
		}
		buf = append(buf, js...)
	}
	if len(buf) > 0 {
		payloads = append(payloads, string(append(buf, ']')))
	}
	b.Queue(`SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, notifyChannel, payloads)
	return nil
}
