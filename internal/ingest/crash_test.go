package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// TestCrashLosesNothingAcknowledged runs the ingest app over HTTP against a
// real nats-server process, SIGKILLs the server twice during a load of
// concurrent appends and restarts it on the same store, then kills it once
// more after the load. Every event answered 202 must be in the stream
// exactly once, at the seq the 202 gave. Requests answered 503 are not
// acknowledged; the clients re-send them with the same ids, as the 503 tells
// them to, so re-sends across a crash must come back as duplicates.
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	t.Parallel()
	start := time.Now()

	p := testenv.StartNATSProcess(t)
	app := startApp(t, p, testenv.Database(t))

	const (
		workers       = 24
		okBeforeKill  = 200 // 202 requests before the first kill
		okAfterStart  = 200 // 202 requests after each restart
		crashCycles   = 2
		phaseDeadline = 20 * time.Second
	)
	l := startCrashLoad(t, app.url, app.key, workers)
	waitUntil(t, phaseDeadline, "202s before the first kill", func() bool { return l.okRequests.Load() >= okBeforeKill })
	for cycle := 1; cycle <= crashCycles; cycle++ {
		failed := l.failedRequests()
		killedAt := time.Now()
		p.Kill(t)
		// Requests caught by the crash time out and are answered 503.
		waitUntil(t, phaseDeadline, fmt.Sprintf("cycle %d: a 503 while nats-server is down", cycle),
			func() bool { return l.failedRequests() > failed })
		p.Start(t)
		restartedAt := time.Now()
		ok := l.okRequests.Load()
		waitUntil(t, phaseDeadline, fmt.Sprintf("cycle %d: 202s after the restart, without restarting ingest", cycle),
			func() bool { return l.okRequests.Load() >= ok+okAfterStart })
		t.Logf("cycle %d: down %v, %d requests failed meanwhile; recovered %v after the restart",
			cycle, restartedAt.Sub(killedAt).Round(time.Millisecond), l.failedRequests()-failed, time.Since(restartedAt).Round(time.Millisecond))
	}
	l.stop()
	require.False(t, t.Failed(), "the load saw answers other than 202 and 503")

	// Kill once more, so every acknowledged event has been through a
	// SIGKILL, and check that ingest recovers on its own once more.
	p.Kill(t)
	p.Start(t)
	deadline := time.Now().Add(phaseDeadline)
	for l.send([]string{"after-last-restart"}, 0) != http.StatusAccepted {
		require.False(t, t.Failed())
		require.True(t, time.Now().Before(deadline), "no 202 within %v of the last restart", phaseDeadline)
		<-time.After(20 * time.Millisecond) // pace the re-sends
	}

	stored, info := readStream(t, p)
	acked := l.ackedEvents()
	require.Equal(t, uint64(1), info.State.FirstSeq)
	require.Equal(t, info.State.LastSeq, info.State.Msgs, "no gaps in the stream")
	bySeq := map[uint64]string{}
	for id, seqs := range stored {
		require.Len(t, seqs, 1, "event %s is stored %d times, at %v", id, len(seqs), seqs)
	}
	var duplicates int
	for id, r := range acked {
		require.Equal(t, []uint64{r.Seq}, stored[id], "event %s answered 202 (duplicate %v) is stored once, at the seq it was given", id, r.Duplicate)
		require.Empty(t, bySeq[r.Seq], "seq %d given to %s and %s", r.Seq, bySeq[r.Seq], id)
		bySeq[r.Seq] = id
		if r.Duplicate {
			duplicates++
		}
	}
	notAcked := len(stored) - len(acked)
	require.GreaterOrEqual(t, notAcked, 0)

	app.stop()
	select {
	case err := <-app.done:
		app.done <- err // for startApp's cleanup
		require.NoError(t, err, "ingest shuts down cleanly after the crashes")
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after shutdown")
	}
	t.Logf("acknowledged: %d events in %d requests (%d events came back duplicate after a re-send); "+
		"stored: %d events (%d stored without a 202: their request failed and was not re-sent before the load ended); "+
		"answered 503: %d requests; no answer: %d requests; took %v",
		len(acked), l.okRequests.Load(), duplicates, len(stored), notAcked,
		l.unavailable.Load(), l.transport.Load(), time.Since(start).Round(time.Millisecond))
}

// crashLoad is a set of HTTP producers appending events with client-chosen
// ids. A request answered 503 or not answered is re-sent with the same ids.
type crashLoad struct {
	t      *testing.T
	url    string
	key    string
	client *http.Client
	stopc  chan struct{}
	wg     sync.WaitGroup
	once   sync.Once

	okRequests  atomic.Int64 // answered 202
	unavailable atomic.Int64 // answered 503
	transport   atomic.Int64 // no answer

	mu    sync.Mutex
	acked map[string]events.Result // by id, from the 202 answer
}

func startCrashLoad(t *testing.T, url, key string, workers int) *crashLoad {
	t.Helper()
	l := &crashLoad{
		t: t, url: url, key: key,
		client: &http.Client{
			Timeout:   20 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: workers},
		},
		stopc: make(chan struct{}),
		acked: map[string]events.Result{},
	}
	for w := range workers {
		l.wg.Add(1)
		go l.worker(w)
	}
	t.Cleanup(l.stop)
	return l
}

// stop ends the load and waits for the requests in flight to be answered.
func (l *crashLoad) stop() {
	l.once.Do(func() {
		close(l.stopc)
		l.wg.Wait()
		l.client.CloseIdleConnections()
	})
}

func (l *crashLoad) failedRequests() int64 { return l.unavailable.Load() + l.transport.Load() }

func (l *crashLoad) ackedEvents() map[string]events.Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]events.Result, len(l.acked))
	for id, r := range l.acked {
		out[id] = r
	}
	return out
}

// worker sends single events and batches of 10-50 until stopped.
func (l *crashLoad) worker(w int) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(w), 42))
	var ids []string // the request to send; kept until it is answered 202
	for r := 0; ; r++ {
		select {
		case <-l.stopc:
			return
		default:
		}
		if ids == nil {
			n := 1
			if r%3 != 0 {
				n = 10 + rng.IntN(41)
			}
			ids = make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("w%02d-r%05d-e%02d", w, r, i)
			}
		}
		switch l.send(ids, r) {
		case http.StatusAccepted:
			ids = nil
		case http.StatusServiceUnavailable, 0:
			// Re-send the same ids after a short pause, so a stream that
			// answers at once does not turn the load into a busy loop.
			select {
			case <-l.stopc:
				return
			case <-time.After(50 * time.Millisecond):
			}
		default:
			return // send has reported it
		}
	}
}

// send posts ids as one event (a single id) or a batch and records the
// outcome. It returns the status, 0 when there was no answer and -1 after
// reporting an error.
func (l *crashLoad) send(ids []string, n int) int {
	var body any
	if len(ids) == 1 {
		body = event(ids[0], n)
	} else {
		es := make([]map[string]any, len(ids))
		for i, id := range ids {
			es[i] = event(id, n*100+i)
		}
		body = batch(es...)
	}
	raw, err := json.Marshal(body)
	if err != nil {
		l.t.Errorf("encode request: %v", err)
		return -1
	}
	req, err := http.NewRequest(http.MethodPost, l.url+"/v1/events", bytes.NewReader(raw))
	if err != nil {
		l.t.Errorf("new request: %v", err)
		return -1
	}
	req.Header.Set("Authorization", "Bearer "+l.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		l.transport.Add(1)
		return 0
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		l.transport.Add(1)
		return 0
	}
	switch resp.StatusCode {
	case http.StatusAccepted:
		var ok struct{ Events []events.Result }
		if err := json.Unmarshal(answer, &ok); err != nil || len(ok.Events) != len(ids) {
			l.t.Errorf("202 for %d events with body %s (%v)", len(ids), answer, err)
			return -1
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		for i, r := range ok.Events {
			if r.ID != ids[i] || r.Seq == 0 {
				l.t.Errorf("202 result %d is %+v for id %s", i, r, ids[i])
				return -1
			}
			if prev, seen := l.acked[r.ID]; seen {
				l.t.Errorf("event %s acknowledged twice: %+v and %+v", r.ID, prev, r)
				return -1
			}
			l.acked[r.ID] = r
		}
		l.okRequests.Add(1)
	case http.StatusServiceUnavailable:
		if resp.Header.Get("Retry-After") == "" {
			l.t.Errorf("503 without Retry-After: %s", answer)
		}
		l.unavailable.Add(1)
	default:
		l.t.Errorf("POST of %d events answered %d: %s", len(ids), resp.StatusCode, answer)
		return -1
	}
	return resp.StatusCode
}

// readStream reads the whole EVENTS stream with an ordered consumer and
// returns the seqs each event id is stored at.
func readStream(t *testing.T, p testenv.NATSServer) (map[string][]uint64, *jetstream.StreamInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc := p.Connect(t)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	str, err := js.Stream(ctx, events.StreamName)
	require.NoError(t, err)
	info, err := str.Info(ctx)
	require.NoError(t, err)
	out := map[string][]uint64{}
	if info.State.Msgs == 0 {
		return out, info
	}
	cons, err := str.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	var lastSeq uint64
	for lastSeq < info.State.LastSeq {
		// Ask for no more than what is left, so the last fetch does not
		// wait out its expiry.
		msgs, err := cons.Fetch(int(min(1000, info.State.LastSeq-lastSeq)), jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		n := 0
		for m := range msgs.Messages() {
			meta, err := m.Metadata()
			require.NoError(t, err)
			var e events.Event
			require.NoError(t, json.Unmarshal(m.Data(), &e))
			out[e.ID] = append(out[e.ID], meta.Sequence.Stream)
			lastSeq = meta.Sequence.Stream
			n++
		}
		require.NoError(t, msgs.Error())
		require.NotZero(t, n, "reading the stream stalled after seq %d of %d", lastSeq, info.State.LastSeq)
	}
	return out, info
}

// waitUntil polls cond until it holds, failing the test after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, d, 10*time.Millisecond, "waited %v for %s", d, what)
}
