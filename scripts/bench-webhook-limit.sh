#!/usr/bin/env bash
# The adaptive limit on attempts in flight, and first attempts for every
# fan-out that is not shared, against the settings before them
# (BENCH_MIN_WORKERS=512: the limit fixed at WEBHOOK_WORKERS;
# BENCH_FIRST_MAX_ENDPOINTS=100: events to more endpoints recorded first),
# in one test binary, alternating (scripts/bench-webhook-ab.sh; BENCHMARKS.md,
# Webhooker, "An adaptive limit on attempts in flight"). Raw output goes to
# bench-results/webhook-limit.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCHES=${BENCHES:-Fanout1to1 Fanout1to1000 Fanout1to10000 Fanout1to100000 FanoutSlowReceivers SlowEndpointIsolation} \
	BASE='' BEFORE_ENV='BENCH_MIN_WORKERS=512 BENCH_FIRST_MAX_ENDPOINTS=100' OUT=webhook-limit exec scripts/bench-webhook-ab.sh
