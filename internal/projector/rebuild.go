package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/pkg/events"
)

// RebuildConfig tunes a rebuild. Zero values take defaults.
type RebuildConfig struct {
	Workers   int  // default 2
	BatchSize int  // default 1000
	KeepOld   bool // keep the previous generation's tables (for a rollback)
	// DropDelay is how long the previous generation's tables stay after
	// the switch. Readers of the views timeline.events and
	// timeline.entries do not need it: the switch waits for them and
	// re-points the views in its own transaction, so no query through the
	// views reads the old tables after it. It spares a retry to timeline
	// API reads that chose the old generation just before the switch, and
	// gives SQL that names timeline_g<N> directly time to move. Default 5s.
	DropDelay time.Duration
	// LockTimeout bounds each wait of the switch for transactions reading
	// the views, and of the drop for those reading the old tables. Queries
	// that arrive while the rebuild waits for a lock queue behind it, so
	// this bounds the delay a rebuild adds to one of them; after a timeout
	// the step is tried again. Default 1s.
	LockTimeout time.Duration
	// Progress, when set, is called about every second with the messages
	// still to project.
	Progress func(generation int, pending uint64, switched bool)
}

// RebuildConsumerPrefix starts the name of a rebuild's durable
// ("projector-rebuild-g2"), which is also the consumer of its dead
// letters: a message a rebuild dead-lettered is replayed into the current
// generation like the projector's own (ReplayDeadLetter).
const RebuildConsumerPrefix = DefaultConsumer + "-rebuild-"

// Rebuild replays the stream from sequence 1 into a fresh generation of
// timeline tables while the current generation keeps serving reads and the
// live projection, then switches reads and the live projection over and
// drops the old tables. It returns the new generation.
//
// Correctness: the rebuild reads the whole stream through its own durable,
// so every event is in the new generation once it has caught up. The
// switch takes a row lock that waits for live batches still writing to the
// old generation; live batches after it write to the new one (idempotently,
// keyed by event id), and the rebuild keeps consuming until it has caught
// up again after the switch.
func Rebuild(ctx context.Context, js jetstream.JetStream, pool *pgxpool.Pool, cfg RebuildConfig, log *slog.Logger) (int, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.DropDelay <= 0 {
		cfg.DropDelay = 5 * time.Second
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = time.Second
	}
	store := NewStore(pool)
	cur, err := store.CurrentGeneration(ctx)
	if err != nil {
		return 0, err
	}
	next := cur + 1
	name := fmt.Sprintf("%sg%d", RebuildConsumerPrefix, next)
	// A previous rebuild that did not finish leaves its schema and durable.
	if err := js.DeleteConsumer(ctx, events.StreamName, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, fmt.Errorf("delete stale rebuild consumer: %w", err)
	}
	if _, err := pool.Exec(ctx, "SELECT timeline.drop_generation($1)", next); err != nil {
		return 0, fmt.Errorf("drop stale generation %d: %w", next, err)
	}
	if _, err := pool.Exec(ctx, "SELECT timeline.create_generation($1)", next); err != nil {
		return 0, fmt.Errorf("create generation %d: %w", next, err)
	}
	cons, err := EnsureConsumer(ctx, js, ConsumerConfig{Name: name, MaxAckPending: cfg.Workers * cfg.BatchSize * 4})
	if err != nil {
		return 0, err
	}
	defer func() {
		if err := js.DeleteConsumer(context.WithoutCancel(ctx), events.StreamName, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			log.Warn("delete rebuild consumer", "consumer", name, "error", err)
		}
	}()
	log.Info("rebuilding timelines", "from_generation", cur, "generation", next)

	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	werr := make(chan error, cfg.Workers)
	for range cfg.Workers {
		w := New(cons, pool, Config{Consumer: name, Generation: next, BatchSize: cfg.BatchSize}, nil, log)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(wctx); err != nil {
				werr <- err
			}
		}()
	}
	defer func() { stop(); wg.Wait() }()

	str, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return 0, fmt.Errorf("open stream: %w", err)
	}
	if err := waitCaughtUp(ctx, str, cons, werr, func(p uint64) { report(cfg, next, p, false) }); err != nil {
		return 0, err
	}
	// One transaction switches timeline.current and re-points the views:
	// a query sees the old generation or the new one, never neither.
	err = retryLockTimeout(ctx, pool, cfg.LockTimeout, log, "switch timelines", viewNames, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SELECT timeline.switch_generation($1, $2)", cur, next)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("switch to generation %d: %w", next, err)
	}
	log.Info("switched timelines", "generation", next)
	if err := waitCaughtUp(ctx, str, cons, werr, func(p uint64) { report(cfg, next, p, true) }); err != nil {
		return next, err
	}
	stop()
	wg.Wait()
	if !cfg.KeepOld {
		select {
		case <-time.After(cfg.DropDelay):
		case <-ctx.Done():
			return next, nil
		}
		// DROP waits for statements still reading the old tables (they
		// finish with their answer); statements that queue behind it fail
		// once it commits, so its wait is bounded like the switch's.
		old := []string{schema(cur) + ".events", schema(cur) + ".entries"}
		err := retryLockTimeout(ctx, pool, cfg.LockTimeout, log, "drop the old timelines", old, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "SELECT timeline.drop_generation($1)", cur)
			return err
		})
		if err != nil {
			return next, fmt.Errorf("drop generation %d: %w", cur, err)
		}
	}
	return next, nil
}

// viewNames are the stable views over the current generation.
var viewNames = []string{"timeline.events", "timeline.entries"}

// retryLockTimeout runs fn in a transaction whose lock waits give up after
// timeout, and runs it again after a pause of the same length until it
// gets its locks or ctx ends. Each time out is logged with the sessions
// that hold a lock on one of the relations named in holders (a report
// left open in a transaction, say), so an operator can see what the
// rebuild waits for.
func retryLockTimeout(ctx context.Context, pool *pgxpool.Pool, timeout time.Duration, log *slog.Logger, what string, holders []string, fn func(pgx.Tx) error) error {
	for {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT set_config('lock_timeout', $1, true)", strconv.FormatInt(timeout.Milliseconds(), 10)); err != nil {
				return err
			}
			return fn(tx)
		})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != lockNotAvailable {
			return err
		}
		var pids []int32
		_ = pool.QueryRow(ctx, `SELECT coalesce(array_agg(DISTINCT l.pid ORDER BY l.pid), '{}') FROM pg_locks l
			WHERE l.granted AND l.pid <> pg_backend_pid() AND l.relation = ANY (SELECT to_regclass(r) FROM unnest($1::text[]) AS r)`,
			holders).Scan(&pids)
		log.WarnContext(ctx, what+": sessions reading the timelines hold locks it needs; trying again",
			"lock_timeout", timeout, "relations", holders, "pids", pids)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(timeout):
		}
	}
}

// lockNotAvailable is the SQLSTATE of a lock wait that hit lock_timeout.
const lockNotAvailable = "55P03"

func report(cfg RebuildConfig, g int, pending uint64, switched bool) {
	if cfg.Progress != nil {
		cfg.Progress(g, pending, switched)
	}
}

// waitCaughtUp waits until the consumer has acknowledged every message up
// to the head of the stream as it is now. Messages appended meanwhile do
// not move the target, so a busy stream does not keep it waiting.
func waitCaughtUp(ctx context.Context, str jetstream.Stream, cons jetstream.Consumer, werr <-chan error, progress func(uint64)) error {
	sinfo, err := str.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	target := sinfo.State.LastSeq
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	last := time.Time{}
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("rebuild consumer info: %w", err)
		}
		if time.Since(last) > time.Second {
			progress(info.NumPending + uint64(info.NumAckPending))
			last = time.Now()
		}
		if info.AckFloor.Stream >= target {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-werr:
			return fmt.Errorf("rebuild worker: %w", err)
		case <-t.C:
		}
	}
}

// Generations lists the timeline generations that exist, for operators.
func Generations(ctx context.Context, pool *pgxpool.Pool) ([]int, error) {
	rows, err := pool.Query(ctx, `SELECT substr(nspname, 11)::int FROM pg_namespace WHERE nspname ~ '^timeline_g[0-9]+$' ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("list generations: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}
