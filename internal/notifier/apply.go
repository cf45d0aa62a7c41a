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

type bump struct {
	count             int
	seq               uint64
	event             []byte
	eventID, eventTyp string
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

// apply writes the inbox effects of evs in one transaction: the
// de-duplication keys, new watches, the notification upserts, the digests
// to schedule and the NOTIFY of every change. Events already applied (a
// redelivery) change nothing.
func (w *writer) apply(ctx context.Context, evs []*events.Event) (applyResult, error) {
	return w.applyWith(ctx, evs, nil)
}

// applyWith is apply with also run in the same transaction.
func (w *writer) applyWith(ctx context.Context, evs []*events.Event, also func(pgx.Tx) error) (applyResult, error) {
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
		if err := w.applyTx(ctx, tx, uniq, now, &res); err != nil {
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
// order) in tx.
func (w *writer) applyTx(ctx context.Context, tx pgx.Tx, uniq []*events.Event, now time.Time, res *applyResult) error {
	// One round trip: the de-duplication keys and the tenants' rules.
	batch := &pgx.Batch{}
	queueClaim(batch, uniq)
	queueRules(batch, uniq)
	br := tx.SendBatch(ctx, batch)
	fresh, err := readClaim(br, uniq)
	var rules map[string]Rules
	if err == nil {
		rules, err = readRules(br, uniq)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	res.duplicates += len(uniq) - len(fresh)
	res.applied = len(fresh)
	if len(fresh) == 0 {
		return nil
	}
	// Which rule applies to each event, and whose watchers it reads.
	matched := make([]*Rule, len(fresh))
	need := map[watchKey]bool{}
	for i, e := range fresh {
		r, ok := rules[e.Tenant].Match(e.Type)
		if !ok {
			continue
		}
		matched[i] = &r
		for _, ref := range append(r.Notify.objects(e), r.Watch.objects(e)...) {
			need[watchKey{e.Tenant, ref}] = true
		}
		need[watchKey{e.Tenant, r.group(e)}] = true
	}
	ws, err := loadWatchers(ctx, tx, need)
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
			return fmt.Errorf("encode event %s: %w", e.ID, err)
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
	// One round trip: the new watches and the inbox upsert.
	batch = &pgx.Batch{}
	queueWatches(batch, newWatches, now)
	upsert := queueUpsert(batch, bumps, now)
	br = tx.SendBatch(ctx, batch)
	if len(newWatches) > 0 {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return fmt.Errorf("insert watches: %w", err)
		}
	}
	var changes []Change
	if upsert {
		changes, err = readUpsert(br, bumps)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	res.notifications = len(bumps)
	// One round trip: NOTIFY the changes and read who wants digests.
	batch = &pgx.Batch{}
	if err := queueChanges(batch, changes); err != nil {
		return err
	}
	return scheduleDigests(ctx, tx, batch, bumps, now)
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

// queueUpsert bumps one notification per (tenant, user, group), in key
// order so that concurrent batches lock rows in the same order. It queues
// nothing (and returns false) without bumps.
func queueUpsert(b *pgx.Batch, bumps map[groupKey]*bump, now time.Time) bool {
	if len(bumps) == 0 {
		return false
	}
	keys := make([]groupKey, 0, len(bumps))
	for k := range bumps {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b groupKey) int {
		return cmp.Or(strings.Compare(a.tenant, b.tenant), strings.Compare(a.user, b.user), strings.Compare(a.gtype, b.gtype), strings.Compare(a.gid, b.gid))
	})
	n := len(keys)
	tenants, users, gtypes, gids, bodies := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	counts := make([]int32, n)
	for i, k := range keys {
		bu := bumps[k]
		tenants[i], users[i], gtypes[i], gids[i], counts[i], bodies[i] = k.tenant, k.user, k.gtype, k.gid, int32(bu.count), string(bu.event)
	}
	b.Queue(upsertSQL, tenants, users, gtypes, gids, counts, bodies, now)
	return true
}

// readUpsert returns the inbox changes of the upsert.
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
		if err := rows.Scan(&id, &c.Tenant, &c.UserID, &g.Type, &g.ID, &c.UnreadCount, &c.UpdatedAt); err != nil {
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

// upsertSQL is the inbox write; BenchmarkNotify compares the notifier
// against running it alone (without RETURNING).
const upsertSQL = upsertRowsSQL + `
	RETURNING id, tenant, user_id, group_type, group_id, unread_count, updated_at`

const upsertRowsSQL = `INSERT INTO notify.notifications AS n (tenant, user_id, group_type, group_id, unread_count, last_event, created_at, updated_at)
	SELECT t, u, gt, gi, c, e::jsonb, $7, $7 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[]) AS x(t, u, gt, gi, c, e)
	ON CONFLICT (tenant, user_id, group_type, group_id) DO UPDATE
	SET unread_count = n.unread_count + excluded.unread_count, last_event = excluded.last_event,
	    read_at = NULL, updated_at = excluded.updated_at`

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
