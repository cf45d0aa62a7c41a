package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventline/eventline/pkg/events"
)

// idTable makes re-sent ids answer duplicate with their original sequence
// long after the stream's duplicate window (docs/contract.md §2 "Ingest"):
// ingest.event_ids keeps (tenant, id, seq) for the retention.
//
// The request path pays one indexed lookup per group-commit batch, and only
// for ids a client chose (see mustLookUp). The ids of appended events are
// written after the PubAck, in bulk, by a background writer that gathers
// them for up to idLinger before each insert: the stream's duplicate window
// (STREAM_DUPLICATE_WINDOW, default 2 min, docs/contract.md §2 "Ingest";
// mustLookUp already counts on at least a minute) covers the moment between
// the PubAck and the insert, linger included. If
// Postgres is slow or down, ingest keeps accepting: the lookup is skipped
// (warned and counted) and the writer drops what its bounded queue cannot
// hold, so only the stream's window protects those ids.
type idTable struct {
	pool      *pgxpool.Pool
	retention time.Duration
	log       *slog.Logger
	now       func() time.Time

	queue chan idRow
	done  chan struct{}
	// after starts the linger of a write (time.After; tests drive it),
	// insert runs one (insertIDs).
	after  func(time.Duration) <-chan time.Time
	insert func(ctx context.Context, batch []idRow) error

	lookupErrors prometheus.Counter
	dropped      prometheus.Counter
	written      prometheus.Counter

	warnMu   sync.Mutex
	lastWarn time.Time
}

type idRow struct {
	tenant, id string
	seq        uint64
}

// idQueue bounds the ids waiting to be written; idWriteBatch the rows of
// one insert. idLinger is how long the writer gathers ids after the first
// one before it inserts them (sooner when idWriteBatch are queued): at low
// rates one insert carries many requests' ids instead of one each, which
// is most of what ingest's Postgres backend and the writer cost per event
// (BENCHMARKS.md "Efficiency: CPU per event, by process"). It is far
// inside the stream's duplicate window, which answers re-sends meanwhile.
const (
	idQueue      = 100_000
	idWriteBatch = 5_000
	idLinger     = 100 * time.Millisecond
	lookupBudget = 2 * time.Second
)

func newIDTable(pool *pgxpool.Pool, retention time.Duration, reg prometheus.Registerer, log *slog.Logger) *idTable {
	t := &idTable{pool: pool, retention: retention, log: log, now: time.Now,
		queue: make(chan idRow, idQueue), done: make(chan struct{}), after: time.After,
		lookupErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "eventline_ingest_idempotency_lookup_errors_total",
			Help: "Batches whose ids could not be looked up in ingest.event_ids (only the stream's duplicate window applied)."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "eventline_ingest_idempotency_dropped_total",
			Help: "Appended ids not recorded in ingest.event_ids (queue full or insert failed): only the stream's duplicate window covers them."}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Name: "eventline_ingest_idempotency_written_total",
			Help: "Appended ids recorded in ingest.event_ids."}),
	}
	reg.MustRegister(t.lookupErrors, t.dropped, t.written)
	t.insert = t.insertIDs
	return t
}

// mustLookUp says whether id may have been appended before this batch. A
// UUIDv7 minted within the last minute (ingest mints one for every event
// sent without an id) cannot be older than the stream's duplicate window
// (at least 1 minute), which de-duplicates it if it was: no lookup needed.
func mustLookUp(id string, now time.Time) bool {
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 7 {
		return true
	}
	sec, nsec := u.Time().UnixTime()
	minted := time.Unix(sec, nsec)
	return minted.Before(now.Add(-time.Minute)) || minted.After(now.Add(time.Second))
}

// Wrap returns an Appender that answers ids in the table as duplicates and
// records the ids next appends.
func (t *idTable) wrap(next Appender) Appender { return &idempotent{t: t, next: next} }

type idempotent struct {
	t    *idTable
	next Appender
}

func (a *idempotent) AppendNormalized(ctx context.Context, es []events.Event) ([]events.Result, error) {
	found := a.t.lookup(ctx, es)
	if len(found) == 0 {
		res, err := a.next.AppendNormalized(ctx, es)
		if err == nil {
			a.t.record(es, res)
		}
		return res, err
	}
	results := make([]events.Result, len(es))
	var send []events.Event
	var at []int
	for i, e := range es {
		if seq, ok := found[idRow{tenant: e.Tenant, id: e.ID}]; ok {
			results[i] = events.Result{ID: e.ID, Seq: seq, Duplicate: true}
			continue
		}
		send = append(send, e)
		at = append(at, i)
	}
	if len(send) > 0 {
		res, err := a.next.AppendNormalized(ctx, send)
		if err != nil {
			return nil, err
		}
		a.t.record(send, res)
		for j, r := range res {
			results[at[j]] = r
		}
	}
	return results, nil
}

// AppendEach is AppendNormalized for independent events: ids found in the
// table are answered duplicate, the others go to next (on its own if next
// is an EachAppender, else as one append whose error is every event's),
// and only the stored ones are recorded.
func (a *idempotent) AppendEach(ctx context.Context, es []events.Event) ([]events.Result, []error) {
	found := a.t.lookup(ctx, es)
	results := make([]events.Result, len(es))
	errs := make([]error, len(es))
	send := make([]events.Event, 0, len(es))
	var at []int
	for i, e := range es {
		if seq, ok := found[idRow{tenant: e.Tenant, id: e.ID}]; ok {
			results[i] = events.Result{ID: e.ID, Seq: seq, Duplicate: true}
			continue
		}
		send = append(send, e)
		at = append(at, i)
	}
	if len(send) == 0 {
		return results, errs
	}
	var res []events.Result
	var sendErrs []error
	var err error
	if each, ok := a.next.(EachAppender); ok {
		res, sendErrs = each.AppendEach(ctx, send)
		if len(res) != len(send) || len(sendErrs) != len(send) {
			err = fmt.Errorf("append returned %d results and %d errors for %d events", len(res), len(sendErrs), len(send))
		}
	} else {
		res, err = a.next.AppendNormalized(ctx, send)
		if err == nil && len(res) != len(send) {
			err = fmt.Errorf("append returned %d results for %d events", len(res), len(send))
		}
	}
	if err != nil {
		res, sendErrs = make([]events.Result, len(send)), make([]error, len(send))
		for j := range sendErrs {
			sendErrs[j] = err
		}
	}
	var stored []events.Event
	var storedRes []events.Result
	for j, r := range res {
		if sendErrs[j] != nil {
			errs[at[j]] = sendErrs[j]
			continue
		}
		results[at[j]] = r
		stored, storedRes = append(stored, send[j]), append(storedRes, r)
	}
	if len(stored) > 0 {
		a.t.record(stored, storedRes)
	}
	return results, errs
}

// lookup returns the stored sequence of every id of es in the table
// (keys with seq 0).
func (t *idTable) lookup(ctx context.Context, es []events.Event) map[idRow]uint64 {
	now := t.now()
	var tenants, ids []string
	for _, e := range es {
		if mustLookUp(e.ID, now) {
			tenants, ids = append(tenants, e.Tenant), append(ids, e.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, lookupBudget)
	defer cancel()
	// One primary-key probe per id: the LIMIT keeps the planner from
	// turning the lateral join into a hash join over the whole table,
	// which it picks when the table's statistics are stale.
	rows, err := t.pool.Query(ctx, `SELECT q.tenant, q.id, e.seq FROM unnest($1::text[], $2::text[]) AS q(tenant, id)
		CROSS JOIN LATERAL (SELECT seq, recorded_at FROM ingest.event_ids e WHERE e.tenant = q.tenant AND e.id = q.id LIMIT 1) e
		WHERE e.recorded_at > $3`, tenants, ids, now.Add(-t.retention))
	if err != nil {
		t.lookupFailed(err)
		return nil
	}
	defer rows.Close()
	var found map[idRow]uint64
	for rows.Next() {
		var r idRow
		var seq int64
		if err := rows.Scan(&r.tenant, &r.id, &seq); err != nil {
			t.lookupFailed(err)
			return nil
		}
		if found == nil {
			found = map[idRow]uint64{}
		}
		found[r] = uint64(seq)
	}
	if err := rows.Err(); err != nil {
		t.lookupFailed(err)
		return nil
	}
	return found
}

func (t *idTable) lookupFailed(err error) {
	t.lookupErrors.Inc()
	t.warn("idempotency lookup failed; only the stream's duplicate window de-duplicates this batch", err)
}

// warn logs at most once a minute.
func (t *idTable) warn(msg string, err error) {
	t.warnMu.Lock()
	defer t.warnMu.Unlock()
	if now := time.Now(); now.Sub(t.lastWarn) > time.Minute {
		t.lastWarn = now
		t.log.Warn(msg, "error", err)
	}
}

// record queues the ids that were appended (not duplicates) for the writer.
func (t *idTable) record(es []events.Event, res []events.Result) {
	for i, r := range res {
		if r.Duplicate {
			continue
		}
		select {
		case t.queue <- idRow{tenant: es[i].Tenant, id: r.ID, seq: r.Seq}:
		default:
			t.dropped.Inc()
		}
	}
}

// run writes queued ids in bulk and prunes rows past the retention, until
// ctx ends; then it writes what is queued (bounded by a few seconds).
func (t *idTable) run(ctx context.Context) {
	defer close(t.done)
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	batch := make([]idRow, 0, idWriteBatch)
	for {
		select {
		case r := <-t.queue:
			batch = t.linger(ctx, append(batch[:0], r))
			t.write(context.WithoutCancel(ctx), batch)
		case <-prune.C:
			t.prune(ctx)
		case <-ctx.Done():
			for len(t.queue) > 0 {
				batch = t.fill(batch[:0])
				t.write(context.WithoutCancel(ctx), batch)
			}
			return
		}
	}
}

// linger adds to batch what is queued within idLinger, up to one insert's
// worth; it returns early, with what is queued, when ctx ends.
func (t *idTable) linger(ctx context.Context, batch []idRow) []idRow {
	timeout := t.after(idLinger)
	for len(batch) < idWriteBatch {
		select {
		case r := <-t.queue:
			batch = append(batch, r)
		case <-timeout:
			return t.fill(batch)
		case <-ctx.Done():
			return t.fill(batch)
		}
	}
	return batch
}

// fill takes what else is queued, up to one insert's worth.
func (t *idTable) fill(batch []idRow) []idRow {
	for len(batch) < idWriteBatch {
		select {
		case r := <-t.queue:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

func (t *idTable) write(ctx context.Context, batch []idRow) {
	if len(batch) == 0 {
		return
	}
	if err := t.insert(ctx, batch); err != nil {
		t.dropped.Add(float64(len(batch)))
		t.warn("could not record appended ids for idempotency; only the stream's duplicate window covers them", err)
		return
	}
	t.written.Add(float64(len(batch)))
}

// insertIDs inserts batch into ingest.event_ids in one statement.
func (t *idTable) insertIDs(ctx context.Context, batch []idRow) error {
	tenants, ids, seqs := make([]string, len(batch)), make([]string, len(batch)), make([]int64, len(batch))
	for i, r := range batch {
		tenants[i], ids[i], seqs[i] = r.tenant, r.id, int64(r.seq)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// synchronous_commit off: the ids are a cache of what the stream holds
	// durably; a crash may lose the last fraction of a second of them, which
	// the stream's duplicate window still covers.
	_, err := t.pool.Exec(ctx, `WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true))
		INSERT INTO ingest.event_ids (tenant, id, seq)
		SELECT t, i, s FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(t, i, s), cfg ON CONFLICT DO NOTHING`, tenants, ids, seqs)
	return err
}

// prune deletes rows past the retention, in bounded chunks so no
// statement holds locks for long.
func (t *idTable) prune(ctx context.Context) {
	cutoff := t.now().Add(-t.retention)
	for ctx.Err() == nil {
		tag, err := t.pool.Exec(ctx, `DELETE FROM ingest.event_ids WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM ingest.event_ids WHERE recorded_at < $1 LIMIT 10000))`, cutoff)
		if err != nil {
			t.warn("could not prune ingest.event_ids", err)
			return
		}
		if tag.RowsAffected() < 10000 {
			return
		}
	}
}
