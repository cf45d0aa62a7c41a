package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/pkg/events"
)

// RebuildConfig tunes a rebuild. Zero values take defaults.
type RebuildConfig struct {
	Workers   int  // default 2
	BatchSize int  // default 1000
	KeepOld   bool // keep the previous generation's tables (for a rollback)
	// DropDelay lets reads that chose the old generation just before the
	// switch finish before its tables are dropped. Default 5s.
	DropDelay time.Duration
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
	if _, err := pool.Exec(ctx, fmt.Sprintf("DROP SCHEMA IF EXISTS %s CASCADE", schema(next))); err != nil {
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
	tag, err := pool.Exec(ctx, "UPDATE timeline.current SET generation = $1, switched_at = now() WHERE generation = $2", next, cur)
	if err != nil {
		return 0, fmt.Errorf("switch to generation %d: %w", next, err)
	}
	if tag.RowsAffected() != 1 {
		return 0, fmt.Errorf("generation %d is no longer current: another rebuild switched first", cur)
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
		if _, err := pool.Exec(ctx, fmt.Sprintf("DROP SCHEMA IF EXISTS %s CASCADE", schema(cur))); err != nil {
			return next, fmt.Errorf("drop generation %d: %w", cur, err)
		}
	}
	return next, nil
}

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
