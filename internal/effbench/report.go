package effbench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Columns are the groups the report shows, in order; a group a run did
// not see (the notifier's backends, when no watch matches) shows 0.
var Columns = []string{"ingest", "nats-server", "projector", "notifier", "webhooker", "pg:ingest", "pg:projector", "pg:notifier", "pg:webhooker", "pg:other"}

// medianOf is the median over runs of f applied to each run's phase
// named name.
func medianOf(res Result, name string, f func(Phase) float64) float64 {
	var xs []float64
	for _, run := range res.Runs {
		for _, p := range run {
			if p.Name == name {
				xs = append(xs, f(p))
			}
		}
	}
	return Median(xs)
}

func floorMedian(res Result, name string, f func(Floor) float64) float64 {
	var xs []float64
	for _, run := range res.Floors {
		for _, fl := range run {
			if fl.Name == name {
				xs = append(xs, f(fl))
			}
		}
	}
	return Median(xs)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Report writes the medians over the runs as Markdown tables.
func Report(w io.Writer, o Options, res Result) {
	fmt.Fprintf(w, "Medians of %d runs; each rate %s measured after %s of warm-up, one event per request (64 workers, open loop).\n\n", len(res.Runs), o.Duration, o.Warmup)
	head := func(first string, extra ...string) {
		cols := append(append([]string{first}, Columns...), extra...)
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(cols, " | "), strings.Repeat("---:|", len(cols)))
	}
	names := []string{"idle", "poller"}
	for _, r := range o.Rates {
		names = append(names, fmt.Sprint(r))
	}

	fmt.Fprintf(w, "CPU in cores (CPU time / wall time) by process:\n\n")
	head("phase", "pipeline", "pg:background", "bench client")
	for _, n := range names {
		label := n + " ev/s"
		switch n {
		case "idle":
			label = "idle"
		case "poller":
			label = fmt.Sprintf("idle + timeline poll every %s", o.Poll)
		}
		row := []string{label}
		for _, g := range append(append([]string{}, Columns...), "", "pg:background", "bench") {
			row = append(row, fmt.Sprintf("%.3f", medianOf(res, n, func(p Phase) float64 {
				if g == "" {
					return Cores(p.Usage.Pipeline(), p.Usage.Wall)
				}
				return Cores(p.Usage.CPU[g], p.Usage.Wall)
			})))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}

	floorAt := func(pace int) float64 {
		return FloorPerEvent(floorMedian(res, FloorName("publish", pace), Floor.PerOp), floorMedian(res, FloorName("http", pace), Floor.PerOp),
			floorMedian(res, FloorName("insert", pace), Floor.PerOp))
	}
	floor := floorAt(0)
	fmt.Fprintf(w, "\nCPU per event in µs by process, measured while nothing reads the timeline; the latencies come from a second window at the same rate with the timeline read every %s (one read costs the pipeline %.0f µs, from the poller-only phase); \"/ floor\" is the pipeline over the raw floor below, its operations back to back, and \"/ floor at rate\" over the floor of the same operations paced at the rate (each from idle, as events arrive at low rates):\n\n", o.Poll,
		medianOf(res, "poller", func(p Phase) float64 { return PerEvent(pollCost(res, p), 1) }))
	head("rate", "pipeline", "/ floor", "/ floor at rate", "achieved ev/s", "202→timeline p50/p99 ms", "202→webhook p50/p99 ms")
	for _, r := range o.Rates {
		n := fmt.Sprint(r)
		row := []string{n + " ev/s"}
		for _, g := range Columns {
			row = append(row, fmt.Sprintf("%.0f", medianOf(res, n, func(p Phase) float64 { return PerEvent(p.Usage.CPU[g], p.Events) })))
		}
		pipeline := medianOf(res, n, func(p Phase) float64 { return PerEvent(p.Usage.Pipeline(), p.Events) })
		paced := "—"
		if r <= PacedFloorRate {
			paced = fmt.Sprintf("%.1f", pipeline/floorAt(r))
		}
		row = append(row,
			fmt.Sprintf("**%.0f**", pipeline),
			fmt.Sprintf("%.1f", pipeline/floor),
			paced,
			fmt.Sprintf("%.0f", medianOf(res, n, func(p Phase) float64 { return p.Achieved })),
			fmt.Sprintf("%.1f / %.1f", medianOf(res, n, func(p Phase) float64 { return ms(p.Timeline.P50) }), medianOf(res, n, func(p Phase) float64 { return ms(p.Timeline.P99) })),
			fmt.Sprintf("%.1f / %.1f", medianOf(res, n, func(p Phase) float64 { return ms(p.Webhook.P50) }), medianOf(res, n, func(p Phase) float64 { return ms(p.Webhook.P99) })))
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}

	fmt.Fprintf(w, "\nRaw floor, same run, sequential, µs of CPU per operation (client + server):\n\n| operation | pace | client | server | total | ops/s |\n|---|---|---:|---:|---:|---:|\n")
	for _, pace := range append([]int{0}, pacedRates(o.Rates)...) {
		label := "back to back"
		if pace > 0 {
			label = fmt.Sprintf("%d/s", pace)
		}
		for _, f := range []struct{ name, label string }{
			{"publish", "plain durable JetStream publish of one event (PubAck after fsync)"},
			{"http", "one HTTP request with one event to a handler that answers 202"},
			{"insert", "one single-row Postgres INSERT, own transaction"},
		} {
			name := FloorName(f.name, pace)
			fmt.Fprintf(w, "| %s | %s | %.0f | %.0f | %.0f | %.0f |\n", f.label, label,
				floorMedian(res, name, func(fl Floor) float64 { return PerEvent(fl.Client, fl.Ops) }),
				floorMedian(res, name, func(fl Floor) float64 { return PerEvent(fl.Server, fl.Ops) }),
				floorMedian(res, name, Floor.PerOp), floorMedian(res, name, func(fl Floor) float64 { return float64(fl.Ops) / o.Floor.Seconds() }))
		}
	}
	fmt.Fprintf(w, "\nFloor of one event through the pipeline: 1 publish + 1 HTTP request (the server side of the ingest request, the client side of the webhook delivery) + 3 inserts (one per consumer) = **%.0f µs** back to back", floor)
	for _, pace := range pacedRates(o.Rates) {
		fmt.Fprintf(w, ", **%.0f µs** at %d/s", floorAt(pace), pace)
	}
	fmt.Fprintf(w, ".\n")
}

// FloorPerEvent is the raw floor of one event's trip: its publish, a row
// written by each of the three consumers, and one HTTP request, client and
// server: the pipeline serves the ingest request (its client is the load
// generator) and sends the webhook delivery (its server is the receiver),
// half of each. Until 2026-12-06 it counted two whole requests.
func FloorPerEvent(publish, http, insert float64) float64 { return publish + http + 3*insert }

// pollCost is what one timeline read cost in poller, the poller-only
// phase of one of res's runs, beyond that run's idle phase.
func pollCost(res Result, poller Phase) time.Duration {
	for _, run := range res.Runs {
		for i := range run {
			if run[i].Name == "idle" && slices.ContainsFunc(run, func(p Phase) bool {
				return p.Name == "poller" && p.Usage.Wall == poller.Usage.Wall && p.Polls == poller.Polls
			}) {
				return PollCost(run[i], poller)
			}
		}
	}
	return 0
}

// PollCost is the pipeline CPU one timeline read costs: what the
// poller-only phase used beyond the idle phase's rate, per read.
func PollCost(idle, poller Phase) time.Duration {
	if poller.Polls == 0 {
		return 0
	}
	extra := poller.Usage.Pipeline() - time.Duration(Cores(idle.Usage.Pipeline(), idle.Usage.Wall)*float64(poller.Usage.Wall))
	return max(0, extra/time.Duration(poller.Polls))
}
