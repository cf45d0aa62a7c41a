package webhooker

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/pkg/events"
)

// The durable floor of a fan-out: the least a system that consumes events
// from JetStream, records one delivery row per endpoint in Postgres and
// posts each delivery over HTTP must spend (docs/architecture.md §2, §3,
// §8-9), measured in the same benchmark iteration as the webhooker and
// for the same number of deliveries:
//
//   - HTTP: the raw Go client and the receiver (rawRate);
//   - Postgres: a raw COPY of the same delivery rows into a table shaped
//     like webhook.deliveries (its indexes and fillfactor), one commit per
//     statement of the size the webhooker's group commit writes;
//   - JetStream: a raw pull consume and ack of the same events.
//
// Its CPU (this process, nats-server, the database's backends) per
// delivery is the denominator of the benchmarks' cpu/floor ratio. What
// the floor leaves out and the webhooker does: the attempt row and the
// outcome of each delivery, claims and due rows, signing, and Watermill.
// The attempt rows are measured apart (floorLog): cpu/floor+log is the
// ratio to the floor with them.

// floorRowsPerStatement is the size of the floor's COPY statements for a
// fan-out to endpoints: the webhooker's group commit writes up to
// maxInsert deliveries per statement, and with 256 handlers (two
// statements in flight) about 128 one-delivery events at a time.
func floorRowsPerStatement(endpoints int) int {
	if endpoints == 1 {
		return DefaultHandlers / 2
	}
	return maxInsert
}

// floorTable creates the scratch tables once per database.
func (e *benchEnv) floorTable() {
	e.b.Helper()
	_, err := e.svc.pool.Exec(context.Background(), `CREATE SCHEMA IF NOT EXISTS benchfloor;
		CREATE TABLE IF NOT EXISTS benchfloor.deliveries (LIKE webhook.deliveries INCLUDING ALL) WITH (fillfactor = 50);
		CREATE TABLE IF NOT EXISTS benchfloor.attempts (LIKE webhook.attempts INCLUDING ALL)`)
	if err != nil {
		e.b.Fatal(err)
	}
}

// floorInsert copies endpoints×len(evs) pending delivery rows into
// benchfloor.deliveries, perStatement rows per commit, and returns the
// CPU it cost. The rows are built inside the measurement, as the
// webhooker builds its own.
func (e *benchEnv) floorInsert(endpoints int, evs []events.Event, firstSeq uint64) cpuUse {
	e.b.Helper()
	e.floorTable()
	cols := []string{"id", "tenant", "endpoint_id", "event_id", "event_seq", "event_type", "status", "attempts", "next_attempt_at", "last_attempt_at"}
	perStatement := floorRowsPerStatement(endpoints)
	epIDs := make([]string, endpoints)
	for i := range epIDs {
		epIDs[i] = fmt.Sprintf("floor-ep-%d", i)
	}
	now := time.Now()
	var last *time.Time
	return e.floorCopy("deliveries", cols, perStatement, endpoints, evs, func(ev events.Event, k, ep int) []any {
		return []any{delivery.NewID(), ev.Tenant, epIDs[ep], ev.ID, int64(firstSeq) + int64(k), "card.closed", "pending", int32(0), now, last}
	})
}

// floorLog copies one attempt row per delivery of endpoints×len(evs)
// into benchfloor.attempts, shaped like webhook.attempts, in statements
// as large as floorInsert's, and returns the CPU it cost: what logging
// each delivery's attempt (docs/contract.md §2 "Webhooks": every attempt
// is kept with its status, duration and response) costs at the least.
// The durable floor leaves it out; cpu/floor+log counts it.
func (e *benchEnv) floorLog(endpoints int, evs []events.Event) cpuUse {
	e.b.Helper()
	e.floorTable()
	cols := []string{"delivery_id", "n", "tenant", "endpoint_id", "at", "duration_ms", "status_code", "error_class", "error", "response"}
	now := time.Now()
	var blank *string
	return e.floorCopy("attempts", cols, floorRowsPerStatement(endpoints), endpoints, evs, func(ev events.Event, _, ep int) []any {
		return []any{delivery.NewID(), int32(1), ev.Tenant, fmt.Sprintf("floor-ep-%d", ep), now, int32(2), int32(200), blank, blank, blank}
	})
}

// floorCopy copies row(ev, k, ep) for every event evs[k] and endpoint ep
// < endpoints into benchfloor.table, perStatement rows per COPY (one
// commit each), and returns the CPU it cost; the rows are built inside
// the measurement, as the webhooker builds its own.
func (e *benchEnv) floorCopy(table string, cols []string, perStatement, endpoints int, evs []events.Event, row func(ev events.Event, k, ep int) []any) cpuUse {
	ctx := context.Background()
	c := e.cpu.sample(e.b)
	rows := make([][]any, 0, perStatement)
	flush := func() {
		if len(rows) == 0 {
			return
		}
		if _, err := e.svc.pool.CopyFrom(ctx, pgx.Identifier{"benchfloor", table}, cols, pgx.CopyFromRows(rows)); err != nil {
			e.b.Fatal(err)
		}
		rows = rows[:0]
	}
	for k, ev := range evs {
		for ep := range endpoints {
			rows = append(rows, row(ev, k, ep))
			if len(rows) == perStatement {
				flush()
			}
		}
	}
	flush()
	return e.cpu.since(e.b, c)
}

// floorConsume pulls n events from the stream, from firstSeq on, with a
// fresh durable configured like the webhooker's (explicit acks, 32
// messages a pull, asynchronous acks), acks each, waits until the server
// has every ack, and returns the CPU it cost. The durable is made and
// deleted outside the measurement.
func (e *benchEnv) floorConsume(firstSeq uint64, n int) cpuUse {
	e.b.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("benchfloor-%d", firstSeq)
	cons, err := e.js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{Durable: name,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: firstSeq, AckPolicy: jetstream.AckExplicitPolicy,
		MaxAckPending: 10_000, FilterSubject: events.SubjectPrefix + ".>"})
	if err != nil {
		e.b.Fatal(err)
	}
	defer func() { _ = e.js.DeleteConsumer(ctx, events.StreamName, name) }()
	c := e.cpu.sample(e.b)
	var got atomic.Int64
	done := make(chan struct{})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if got.Add(1) == int64(n) {
			close(done)
		}
	}, jetstream.PullMaxMessages(32))
	if err != nil {
		e.b.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		e.b.Fatalf("floor consume: %d of %d events", got.Load(), n)
	}
	cc.Stop()
	testenv.Poll(e.b, time.Minute, "the floor's acks reach the server", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.AckFloor.Consumer >= uint64(n)
	})
	return e.cpu.since(e.b, c)
}

// reportFloor prints the floor of the same iterations next to the
// webhooker's CPU: each part per delivery, their sum, and the ratio of the
// webhooker's CPU per delivery to it (the median of the iterations'
// ratios). httpCPU is rawRate's, which also posted n requests.
func reportFloor(b *testing.B, n int, ourCPU, httpCPU, pgCPU, jsCPU, appendCPU, logCPU []cpuUse) {
	perDelivery := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(n) }
	var floor, ratio, withAppend, pg, js, app, logged, withLog []float64
	for i := range ourCPU {
		f := perDelivery(httpCPU[i].total() + pgCPU[i].total() + jsCPU[i].total())
		floor = append(floor, f)
		ratio = append(ratio, perDelivery(ourCPU[i].total())/f)
		logged = append(logged, perDelivery(logCPU[i].total()))
		withLog = append(withLog, perDelivery(ourCPU[i].total())/(f+perDelivery(logCPU[i].total())))
		withAppend = append(withAppend, perDelivery(ourCPU[i].total()+appendCPU[i].total())/f)
		pg = append(pg, perDelivery(pgCPU[i].total()))
		js = append(js, perDelivery(jsCPU[i].total()))
		app = append(app, perDelivery(appendCPU[i].total()))
	}
	b.ReportMetric(testenv.Median(pg), "floor-pg-cpu-µs/delivery")
	b.ReportMetric(testenv.Median(js), "floor-js-cpu-µs/delivery")
	b.ReportMetric(testenv.Median(floor), "floor-cpu-µs/delivery")
	b.ReportMetric(testenv.Median(ratio), "cpu/floor")
	// The floor with each delivery's attempt row (floorLog).
	b.ReportMetric(testenv.Median(logged), "floor-log-cpu-µs/delivery")
	b.ReportMetric(testenv.Median(withLog), "cpu/floor+log")
	// The events' append is the producer's work, outside the webhooker's
	// window as it is outside the floor's consume; until 2026-12-05 it was
	// inside the window, and cpu/floor then was this.
	b.ReportMetric(testenv.Median(app), "append-cpu-µs/delivery")
	b.ReportMetric(testenv.Median(withAppend), "cpu+append/floor")
}

// appendPaused appends evs while the webhooker's durable is paused, so
// that they are in the stream, as the floor's consume finds them, before
// the webhooker's window opens, and returns the append's results and CPU.
// resume lets the durable deliver them.
func (e *benchEnv) appendPaused(evs []events.Event) ([]events.Result, cpuUse) {
	e.b.Helper()
	ctx := context.Background()
	e.vacuum()
	if _, err := e.js.PauseConsumer(ctx, events.StreamName, DefaultConsumer, time.Now().Add(10*time.Minute)); err != nil {
		e.b.Fatal(err)
	}
	c := e.cpu.sample(e.b)
	res, err := e.pub.AppendBatch(ctx, evs)
	if err != nil {
		e.b.Fatal(err)
	}
	return res, e.cpu.since(e.b, c)
}

// vacuum does before each window the work autovacuum does in production
// and not on the development machine (autovacuum = off): it vacuums and
// analyzes the tables the webhooker writes, so that every window runs on
// plans made for the tables' present sizes, not those cached while they
// were empty, and on tables without the previous windows' dead rows.
func (e *benchEnv) vacuum() {
	e.b.Helper()
	if _, err := e.svc.pool.Exec(context.Background(),
		`VACUUM (ANALYZE) webhook.endpoints, webhook.deliveries, webhook.attempts, webhook.due, webhook.claims`); err != nil {
		e.b.Fatal(err)
	}
}

// resume ends the pause of appendPaused in a moment, and returns that
// moment (the window's start; nothing is delivered before it). Not with ResumeConsumer: in nats-server 2.15.2 it does not wake
// the consumer's delivery loop, so the pull requests already waiting got
// nothing until they expired (no delivery for over 10 s); a pause that
// ends by its deadline does wake it.
func (e *benchEnv) resume() time.Time {
	e.b.Helper()
	at := time.Now().Add(20 * time.Millisecond)
	if _, err := e.js.PauseConsumer(context.Background(), events.StreamName, DefaultConsumer, at); err != nil {
		e.b.Fatal(err)
	}
	return at
}

// waitLogged waits until the webhooker has logged total outcomes
// (eventline_webhook_outcomes_logged_total, read in this process: no
// query adds to the window it ends). The CPU windows of the fan-out
// benchmarks end there, not at the last delivery's arrival: writing the
// outcomes is part of the work a delivery costs, and an outcome written
// after the last arrival (the result writer's last batch, or the record
// of deliveries attempted first) counts like the others.
func (e *benchEnv) waitLogged(total int) {
	e.b.Helper()
	testenv.Poll(e.b, 5*time.Minute, fmt.Sprintf("%d outcomes logged", total), func() bool {
		return testenv.CounterValue(e.b, e.svc.metrics.logged) >= float64(total)
	})
}

// waitAttempts waits until total attempts are logged, so that outcomes
// the result writer still holds after the last delivery arrived are not
// counted in the floor measured next.
func (e *benchEnv) waitAttempts(total int) {
	e.b.Helper()
	testenv.Poll(e.b, 5*time.Minute, fmt.Sprintf("%d attempts logged", total), func() bool {
		var n int
		if err := e.svc.pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook.attempts`).Scan(&n); err != nil {
			e.b.Fatal(err)
		}
		return n >= total
	})
}
