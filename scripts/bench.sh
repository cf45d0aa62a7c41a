#!/usr/bin/env bash
# Runs the ingest benchmarks of BENCHMARKS.md in one `go test` invocation
# (HTTP ingest next to the raw nats.go baselines, all at
# sync_interval: always) and prints the medians, ratios and targets.
#
#   scripts/bench.sh                  # what `make bench` runs
#   scripts/bench.sh clients          # sweep the batched case's client count
#   scripts/bench.sh auth             # batched ingest without NATS auth and with the
#                                     # shipped identities, alternating in one run
#   scripts/bench.sh ids              # batched ingest without and with the idempotency
#                                     # table (ingest.event_ids), alternating in one run
#   scripts/bench.sh ab [ref]         # the ingest of git ref (default main) against this
#                                     # tree's, alternating in one run: single-event and
#                                     # batched ingest next to the raw atomic batch
#                                     # (single-event at 64 and at 8 clients)
#
# Settings (environment):
#   BENCH_COUNT=5        runs of each benchmark (medians are reported)
#   BENCH_TIME=5s        load duration of each run (-benchtime)
#   BENCH_OUT=dir        where to keep the raw output; default
#                        bench-results/ingest-<UTC time> (ignored by git)
#   EVENTLINE_BENCH_CLIENTS=n   HTTP clients of IngestBatched100 (default 32)
#   BENCH_CLIENTS="8 16 24 32 48 64"   client counts of the sweep
#   NATS_SERVER_BIN      nats-server >= 2.12 (default $(go env GOPATH)/bin/nats-server)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
case $mode in all | clients | auth | ids | ab) ;; *)
	echo "usage: $0 [clients | auth | ids | ab [ref]]" >&2
	exit 2
	;;
esac

count=${BENCH_COUNT:-5}
benchtime=${BENCH_TIME:-5s}
out=${BENCH_OUT:-bench-results/ingest-$(date -u +%Y%m%dT%H%M%SZ)}
benchstat_version=v0.0.0-20260908200009-22c9c6c9d4da # golang.org/x/perf has no tags
mkdir -p "$out"
out=$(cd "$out" && pwd) # go test runs in the package directory

# One ingest binary for every run and every go test invocation, so they all
# measure the same build.
go build -o "$out/ingest" ./cmd/ingest
trap 'rm -f "$out/ingest" "$out/ingest-base"' EXIT
base=${2:-main}
if [ "$mode" = ab ]; then
	# The base build from the same module cache, out of a plain export of
	# the ref (no worktree is added).
	src=$(mktemp -d)
	git archive "$base" | tar -x -C "$src"
	(cd "$src" && go build -o "$out/ingest-base" ./cmd/ingest)
	rm -rf "$src"
fi

# The median of the values v[k, 1..n[k]] the awk programs below collect.
awk_median='
function median(k,   m, i, j, t, a) {
	m = n[k]; if (m == 0) return -1
	for (i = 1; i <= m; i++) a[i] = v[k, i] + 0
	for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return m % 2 ? a[(m+1)/2] : (a[m/2] + a[m/2+1]) / 2
}'

nats_bin=${NATS_SERVER_BIN:-$(go env GOPATH)/bin/nats-server}
{
	echo "date:         $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit:       $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$([ -z "$(git status --porcelain 2>/dev/null)" ] || echo ' (with local changes)')"
	echo "cpus:         $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "memory:       $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "kernel:       $(uname -r)"
	echo "go:           $(go env GOVERSION)"
	echo "nats-server:  $("$nats_bin" --version 2>/dev/null || echo "not found at $nats_bin"), jetstream sync_interval: always"
	echo "overrides:    $(env | grep -E '^(INGEST_|GOGC|GOMEMLIMIT|GOMAXPROCS|EVENTLINE_BENCH_)' | tr '\n' ' ')"
	echo "load before:  $(cut -d' ' -f1-3 /proc/loadavg)"
	if [ "$mode" = ab ]; then
		echo "base:         $base ($(git rev-parse --short "$base"))"
		echo "command:      $count rounds of, for ingest=base and ingest=new (the order flips every round): go test ./internal/ingest -run '^\$' -bench '^Benchmark(RawAtomicBatch|IngestBatched100|IngestSingle64|IngestSingle8)\$' -benchtime $benchtime -count 1"
	elif [ "$mode" = auth ] || [ "$mode" = ids ]; then
		name=IngestAuth; [ "$mode" = ids ] && name=IngestIDTable
		echo "command:      $count rounds of: go test ./internal/ingest -run '^\$' -bench '^Benchmark$name\$' -benchtime $benchtime -count 1"
	elif [ "$mode" = clients ]; then
		echo "command:      for each client count: EVENTLINE_BENCH_CLIENTS=n go test ./internal/ingest -run '^\$' -bench '^BenchmarkIngestBatched100\$' -benchtime $benchtime -count 1; $count rounds"
	else
		echo "command:      go test ./internal/ingest -run '^\$' -bench '^Benchmark(RawPublishAsync|RawAtomicBatch|IngestBatched100|IngestSingle64)\$' -benchtime $benchtime -count $count"
	fi
} | tee "$out/machine.txt"

if [ "$mode" = clients ]; then
	# Rounds outside, client counts inside, so noise on the machine spreads
	# over every client count instead of hitting one.
	for _ in $(seq "$count"); do
		for c in ${BENCH_CLIENTS:-8 16 24 32 48 64}; do
			EVENTLINE_INGEST_BIN="$out/ingest" EVENTLINE_BENCH_CLIENTS=$c go test ./internal/ingest -run '^$' \
				-bench '^BenchmarkIngestBatched100$' -benchtime "$benchtime" -count 1 -timeout 10m | tee -a "$out/clients.txt"
		done
	done
	echo
	awk "$awk_median"'
	/^Benchmark/ {
		c = ""; for (i = 3; i < NF; i += 2) if ($(i+1) == "clients") c = $i + 0
		for (i = 3; i < NF; i += 2) { key = c SUBSEP $(i+1); v[key, ++n[key]] = $i }
		cs[c] = 1
	}
	END {
		printf "IngestBatched100 by client count, medians of %d runs\n", '"$count"'
		printf "%8s %10s %8s %8s %12s %12s %11s %11s %11s\n", "clients", "events/s", "p50 ms", "p99 ms", "events/batch", "ingest cores", "nats cores", "pg cores", "other cores"
		for (c in cs) order[++nc] = c + 0
		for (i = 2; i <= nc; i++) for (j = i; j > 1 && order[j-1] > order[j]; j--) { t = order[j]; order[j] = order[j-1]; order[j-1] = t }
		for (i = 1; i <= nc; i++) {
			c = order[i]
			printf "%8d %10.0f %8.1f %8.1f %12.0f %12.2f %11.2f %11.2f %11.2f\n", c, median(c SUBSEP "events/s"), median(c SUBSEP "p50-ms"), median(c SUBSEP "p99-ms"),
				median(c SUBSEP "events/batch"), median(c SUBSEP "ingest-cores"), median(c SUBSEP "nats-cores"), median(c SUBSEP "pg-cores"), median(c SUBSEP "other-cores")
		}
	}' "$out/clients.txt" | tee "$out/clients-summary.txt"
	echo
	echo "raw output in $out"
	exit 0
fi

# paired bench off on what: rounds outside, each running off then on, so
# noise on the machine hits both (-count would run every off before any
# on); prints both medians and their ratio.
paired() {
	local bench=$1 off=$2 on=$3 what=$4
	for _ in $(seq "$count"); do
		EVENTLINE_INGEST_BIN="$out/ingest" go test ./internal/ingest -run '^$' -bench "^Benchmark$bench\$" \
			-benchtime "$benchtime" -count 1 -timeout 20m | tee -a "$out/$bench.txt"
	done
	echo "load after:   $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"
	echo
	awk -v bench="$bench" -v off="$off" -v on="$on" -v what="$what" "$awk_median"'
	index($1, "Benchmark" bench "/") == 1 {
		name = $1; sub(/^Benchmark[A-Za-z0-9]*\//, "", name); sub(/-[0-9]+$/, "", name)
		for (i = 3; i < NF; i += 2) { k = name SUBSEP $(i+1); v[k, ++n[k]] = $i }
	}
	END {
		printf "IngestBatched100 (32 clients), medians of %d runs each\n", n[on SUBSEP "events/s"]
		printf "%-9s %10s %8s %8s %12s %11s\n", "", "events/s", "p50 ms", "p99 ms", "ingest cores", "nats cores"
		names[1] = off; names[2] = on
		for (i = 1; i <= 2; i++) {
			b = names[i]
			printf "%-9s %10.0f %8.1f %8.1f %12.2f %11.2f\n", b, median(b SUBSEP "events/s"), median(b SUBSEP "p50-ms"), median(b SUBSEP "p99-ms"),
				median(b SUBSEP "ingest-cores"), median(b SUBSEP "nats-cores")
		}
		printf "\n%s / %s: %.3f events/s (%s)\n", on, off, median(on SUBSEP "events/s") / median(off SUBSEP "events/s"), what
	}' "$out/$bench.txt" | tee "$out/$bench-summary.txt"
	echo
	echo "raw output in $out"
}

if [ "$mode" = ab ]; then
	# Rounds outside, builds inside, so noise on the machine hits both; the
	# order flips every round (base new, new base, ...) so a load that
	# grows or fades during the run does not favour the one that goes first.
	for r in $(seq "$count"); do
		order="base new"; [ $((r % 2)) = 0 ] && order="new base"
		for b in $order; do
			bin=$out/ingest; [ $b = base ] && bin=$out/ingest-base
			EVENTLINE_INGEST_BIN=$bin go test ./internal/ingest -run '^$' \
				-bench '^Benchmark(RawAtomicBatch|IngestBatched100|IngestSingle64|IngestSingle8)$' \
				-benchtime "$benchtime" -count 1 -timeout 20m | sed "s/^Benchmark\([A-Za-z0-9]*\)/Benchmark\1\/$b/" | tee -a "$out/ab.txt"
		done
	done
	echo "load after:   $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"
	echo
	awk "$awk_median"'
	/^Benchmark/ {
		name = $1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name)
		for (i = 3; i < NF; i += 2) { k = name SUBSEP $(i+1); v[k, ++n[k]] = $i }
	}
	function med(b, u) { return median(b SUBSEP u) }
	function opt(b, u, f) { return n[b SUBSEP u] ? sprintf(f, med(b, u)) : "-" }
	END {
		printf "medians of %d rounds (base = '"$base"', new = this tree)\n", n["IngestSingle64/new" SUBSEP "events/s"]
		printf "%-22s %9s %7s %7s %8s %7s %7s\n", "benchmark", "events/s", "p50 ms", "p99 ms", "ev/batch", "ingest", "nats"
		split("RawAtomicBatch/base RawAtomicBatch/new IngestBatched100/base IngestBatched100/new IngestSingle64/base IngestSingle64/new IngestSingle8/base IngestSingle8/new", names, " ")
		for (i = 1; i <= 8; i++) {
			b = names[i]
			printf "%-22s %9.0f %7s %7s %8s %7s %7.2f\n", b, med(b, "events/s"), opt(b, "p50-ms", "%.2f"), opt(b, "p99-ms", "%.2f"),
				opt(b, "events/batch", "%.1f"), opt(b, "ingest-cores", "%.2f"), med(b, "nats-cores")
		}
		printf "\nnew / base, single-event:   %.3f events/s\n", med("IngestSingle64/new", "events/s") / med("IngestSingle64/base", "events/s")
		printf "new / base, single-event 8: %.3f events/s\n", med("IngestSingle8/new", "events/s") / med("IngestSingle8/base", "events/s")
		printf "new / base, batched:        %.3f events/s\n", med("IngestBatched100/new", "events/s") / med("IngestBatched100/base", "events/s")
		printf "batched / raw atomic batch: base %.2f, new %.2f\n", med("IngestBatched100/base", "events/s") / med("RawAtomicBatch/base", "events/s"),
			med("IngestBatched100/new", "events/s") / med("RawAtomicBatch/new", "events/s")
	}' "$out/ab.txt" | tee "$out/ab-summary.txt"
	echo
	echo "raw output in $out"
	exit 0
fi
if [ "$mode" = auth ]; then
	paired IngestAuth auth=off auth=on "the cost should be under 5%"
	exit 0
fi
if [ "$mode" = ids ]; then
	paired IngestIDTable ids=off ids=on "the cost should be under 15%"
	exit 0
fi

EVENTLINE_INGEST_BIN="$out/ingest" go test ./internal/ingest -run '^$' \
	-bench '^Benchmark(RawPublishAsync|RawAtomicBatch|IngestBatched100|IngestSingle64)$' \
	-benchtime "$benchtime" -count "$count" -timeout 60m | tee "$out/ingest.txt"
echo "load after:   $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"

echo
go run "golang.org/x/perf/cmd/benchstat@$benchstat_version" "$out/ingest.txt" | tee "$out/benchstat.txt"

# Medians of every metric per benchmark, the ratios between medians of this
# run, and the targets of the issue.
echo
awk "$awk_median"'
/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	for (i = 3; i < NF; i += 2) { k = name SUBSEP $(i+1); v[k, ++n[k]] = $i }
}
function med(b, u) { return median(b SUBSEP u) }
function opt(b, u, f) { return n[b SUBSEP u] ? sprintf(f, med(b, u)) : "-" }
function verdict(ok) { return ok ? "MET" : "NOT MET" }
END {
	async = med("RawPublishAsync", "events/s"); atomic = med("RawAtomicBatch", "events/s")
	batched = med("IngestBatched100", "events/s"); single = med("IngestSingle64", "events/s")
	printf "medians of %d runs\n", n["RawAtomicBatch" SUBSEP "events/s"]
	printf "%-18s %9s %7s %7s %8s %7s %7s %7s %7s %7s %7s\n", "benchmark", "events/s", "p50 ms", "p99 ms", "rss MiB", "clients", "ingest", "nats", "loadgen", "pg", "other"
	printf "%-18s %9s %7s %7s %8s %7s %7s %7s %7s %7s %7s\n", "", "", "", "", "(peak)", "", "cores", "cores", "cores", "cores", "cores"
	split("RawPublishAsync RawAtomicBatch IngestBatched100 IngestSingle64", names, " ")
	for (i = 1; i <= 4; i++) {
		b = names[i]
		printf "%-18s %9.0f %7s %7s %8s %7s %7s %7.2f %7.2f %7.2f %7.2f\n", b, med(b, "events/s"), opt(b, "p50-ms", "%.2f"), opt(b, "p99-ms", "%.2f"),
			opt(b, "ingest-peak-rss-MiB", "%.1f"), opt(b, "clients", "%d"), opt(b, "ingest-cores", "%.2f"), med(b, "nats-cores"), med(b, "loadgen-cores"), med(b, "pg-cores"), med(b, "other-cores")
	}
	printf "\nratios of medians\n"
	printf "  ingest batched / raw atomic batch: %.2f  (the issue expects about 0.6)\n", batched / atomic
	printf "  ingest batched / raw async:        %.2f  (target >= 8)\n", batched / async
	printf "\ntargets\n"
	printf "  batched >= 30000 events/s:          %.0f  %s\n", batched, verdict(batched >= 30000)
	printf "  batched >= 8x raw async:            %.2fx %s\n", batched / async, verdict(batched >= 8 * async)
	printf "  single (64 clients) >= 5000 ev/s:   %.0f  %s\n", single, verdict(single >= 5000)
	printf "  single p99 <= 25 ms:                %.2f  %s\n", med("IngestSingle64", "p99-ms"), verdict(med("IngestSingle64", "p99-ms") <= 25)
}' "$out/ingest.txt" | tee "$out/summary.txt"
echo
echo "raw output in $out"
