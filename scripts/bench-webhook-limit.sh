#!/usr/bin/env bash
# The adaptive limit on attempts in flight, and first attempts for every
# fan-out that is not shared, against the settings before them: runs each
# webhooker benchmark named in BENCHES one process at a time, "before"
# (BENCH_MIN_WORKERS=512: the limit fixed at WEBHOOK_WORKERS;
# BENCH_FIRST_MAX_ENDPOINTS=100: events to more endpoints recorded first)
# and "after" (the defaults) alternating, for ROUNDS rounds of -benchtime
# BENCHTIME each, and prints the medians of every metric per benchmark and
# setting (BENCHMARKS.md, Webhooker, "An adaptive limit on attempts in
# flight"). Raw output goes to bench-results/webhook-limit.txt. Needs
# Postgres and `make tools`.
set -euo pipefail
cd "$(dirname "$0")/.."
benches=${BENCHES:-Fanout1to1 Fanout1to1000 Fanout1to10000 Fanout1to100000 FanoutSlowReceivers SlowEndpointIsolation}
rounds=${ROUNDS:-3}
benchtime=${BENCHTIME:-1x}
mkdir -p bench-results
out=bench-results/webhook-limit.txt
bin=$(mktemp -d)/webhooker.test
go test -c -o "$bin" ./internal/webhooker
: > "$out"
for b in $benches; do
	for r in $(seq 1 "$rounds"); do
		for setting in before after; do
			min=0 first=0
			[ "$setting" = before ] && min=512 first=100
			(cd internal/webhooker && BENCH_MIN_WORKERS=$min BENCH_FIRST_MAX_ENDPOINTS=$first "$bin" -test.run '^$' -test.bench "^Benchmark$b\$" -test.benchtime "$benchtime" -test.timeout 30m) |
				sed -n "s|^Benchmark$b-[0-9]*|Benchmark$b/$setting|p" | tee -a "$out"
		done
	done
done
awk -f scripts/metric-medians.awk "$out"
