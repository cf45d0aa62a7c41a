#!/usr/bin/env bash
# A webhooker change against what came before it, alternating processes:
# runs each webhooker benchmark named in BENCHES one process at a time,
# "before" and "after" alternating, for ROUNDS rounds of -benchtime
# BENCHTIME each, and prints the medians of every metric per benchmark and
# side. "before" is the test binary of git revision BASE (built from a
# worktree of it), or, without BASE, this tree's binary run with
# BEFORE_ENV (old settings); "after" is this tree's binary with AFTER_ENV.
# Raw output goes to bench-results/$OUT.txt. Needs Postgres and
# `make tools`.
set -euo pipefail
cd "$(dirname "$0")/.."
benches=${BENCHES:-Fanout1to1 Fanout1to1000 Fanout1to10000 Fanout1to100000}
rounds=${ROUNDS:-3}
benchtime=${BENCHTIME:-1x}
mkdir -p bench-results
out=bench-results/${OUT:-webhook-ab}.txt
dir=$(mktemp -d)
go test -c -o "$dir/after.test" ./internal/webhooker
before=$dir/after.test
if [ -n "${BASE:-}" ]; then
	git worktree add --detach "$dir/base" "$BASE" >/dev/null
	trap 'git worktree remove --force "$dir/base"' EXIT
	(cd "$dir/base" && go test -c -o "$dir/before.test" ./internal/webhooker)
	before=$dir/before.test
fi
: > "$out"
for b in $benches; do
	for r in $(seq 1 "$rounds"); do
		for side in before after; do
			bin=$dir/after.test vars=${AFTER_ENV:-}
			[ "$side" = before ] && bin=$before vars=${BEFORE_ENV:-}
			# shellcheck disable=SC2086 # vars is a list of NAME=value words
			(cd internal/webhooker && env $vars "$bin" -test.run '^$' -test.bench "^Benchmark$b\$" -test.benchtime "$benchtime" -test.timeout 30m) |
				sed -n "s|^Benchmark$b-[0-9]*|Benchmark$b/$side|p" | tee -a "$out"
		done
	done
done
awk -f scripts/metric-medians.awk "$out"
