package main_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// TestThreeReplicasShareA10kFanout: one event for 10,000 endpoints,
// three webhooker processes on one durable. Every endpoint receives it
// exactly once, every delivery is recorded as succeeded at its first
// attempt, and each replica sends a share (docs/architecture.md
// "Webhooks": large fan-outs are cut into chunks any replica can take).
func TestThreeReplicasShareA10kFanout(t *testing.T) {
	t.Parallel()
	const endpoints = 10_000
	// 32 attempts in flight per replica to endpoints that answer in 20 ms:
	// a replica sends at most 1,600 a second, so how the fan-out is shared
	// depends on what each replica can hold, not on which one the busy
	// machine's CPU favours (with 512 workers and instant answers one
	// replica could send 90% of it before another was scheduled).
	r := startReplicas(t, 3, "WEBHOOK_WORKERS=32")
	rc := newReceiver(t)
	rc.slow.Store(int64(20 * time.Millisecond))
	bodies := make([]string, endpoints)
	for i := range bodies {
		bodies[i] = fmt.Sprintf(`{"url":"%s/e/%d","events":["card.*"]}`, rc.URL, i)
	}
	r.createEndpoints(bodies)
	r.waitRegistries(endpoints)

	start := time.Now()
	_, err := r.pub.Append(context.Background(), cardEvent("fanout-10k", "c1"))
	require.NoError(t, err)
	testenv.Poll(t, 2*time.Minute, "every endpoint received the event", func() bool { return rc.paths() == endpoints })
	t.Logf("%d endpoints received the event within %s", endpoints, time.Since(start).Round(time.Millisecond))

	// A delivery of a shared fan-out is recorded once its chunk's first
	// attempts are made: count the rows, not only those still pending.
	var recorded, pending, retried int
	testenv.Poll(t, time.Minute, "every delivery recorded as succeeded", func() bool {
		err := r.pool.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE status <> 'succeeded'), count(*) FILTER (WHERE attempts > 1)
			FROM webhook.deliveries`).Scan(&recorded, &pending, &retried)
		require.NoError(t, err)
		return recorded == endpoints && pending == 0
	})
	require.Zero(t, retried, "no delivery needed a second attempt")
	var twice []string
	for i := range endpoints {
		path := fmt.Sprintf("/e/%d", i)
		if ids := rc.ids(path); len(ids) != 1 || ids[0] != "fanout-10k" {
			var after []string
			for _, at := range rc.times(path) {
				after = append(after, at.Sub(start).Round(time.Millisecond).String())
			}
			twice = append(twice, fmt.Sprintf("%s got %v, %v after the append", path, ids, after))
		}
	}
	require.Empty(t, twice, "every endpoint received the event exactly once")
	sent := r.sent()
	t.Logf("attempts per replica: %v", sent)
	for i, n := range sent {
		require.GreaterOrEqual(t, n, float64(endpoints/10), "replica %d sent a share of the fan-out (attempts per replica: %v)", i, sent)
	}
	require.Equal(t, float64(endpoints), sent[0]+sent[1]+sent[2], "one attempt per endpoint in all")
}

// TestThreeReplicasHoldARateLimit: an endpoint with rate_limit 20 is sent
// at most 22 deliveries in any second although three replicas take its
// events, and receives every event once. The second is measured where the
// limit acts, at the start of each attempt (webhook.attempts.at): arrivals
// at the receiver add the network's and the test process's jitter, which
// on a loaded machine bunch deliveries of neighbouring slots together.
func TestThreeReplicasHoldARateLimit(t *testing.T) {
	t.Parallel()
	const limit, count = 20, 160
	// One fan-out handler each: every replica takes a share of the events
	// (a handler holds its event while the first attempt waits for the
	// limit), so every replica sends to the endpoint.
	r := startReplicas(t, 3, "WEBHOOK_FANOUT_HANDLERS=1")
	rc := newReceiver(t)
	ep := r.createEndpoints([]string{fmt.Sprintf(`{"url":"%s/limited","events":["card.*"],"rate_limit":%d}`, rc.URL, limit)})[0]
	r.waitRegistries(1)

	batch := make([]events.Event, count)
	for i := range batch {
		batch[i] = cardEvent(fmt.Sprintf("limited-%d", i), fmt.Sprintf("c%d", i))
	}
	for chunk := range slices.Chunk(batch, 40) {
		_, err := r.pub.AppendBatch(context.Background(), chunk)
		require.NoError(t, err)
	}
	testenv.Poll(t, 2*time.Minute, "every event delivered", func() bool { return len(rc.ids("/limited")) >= count })
	ids := rc.ids("/limited")
	slices.Sort(ids)
	require.Equal(t, count, len(slices.Compact(ids)), "every event once")
	require.Len(t, rc.ids("/limited"), count, "no event twice")

	var started []time.Time
	testenv.Poll(t, time.Minute, "every attempt logged", func() bool {
		rows, err := r.pool.Query(context.Background(), `SELECT at FROM webhook.attempts WHERE endpoint_id = $1 ORDER BY at`, ep)
		require.NoError(t, err)
		started, err = pgx.CollectRows(rows, pgx.RowTo[time.Time])
		require.NoError(t, err)
		return len(started) >= count
	})
	require.Equal(t, count, len(started), "one attempt per event")
	most := busiestSecond(started)
	sent := r.sent()
	t.Logf("busiest second: %d attempts started, %d arrived; attempts per replica %v", most, busiestSecond(rc.times("/limited")), sent)
	for i, n := range sent {
		require.Positive(t, n, "replica %d sent to the endpoint (attempts per replica: %v)", i, sent)
	}
	require.LessOrEqual(t, most, limit*11/10, "attempts started in the busiest second, limit %d, %d events over %s", limit, count, started[len(started)-1].Sub(started[0]))
}

// busiestSecond is the most of the sorted times in one second that starts
// at one of them.
func busiestSecond(times []time.Time) int {
	most := 0
	for i := range times {
		j, _ := slices.BinarySearchFunc(times, times[i].Add(time.Second), func(a, b time.Time) int { return a.Compare(b) })
		most = max(most, j-i)
	}
	return most
}
