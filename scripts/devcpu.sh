#!/bin/bash
# CPU per event of `eventline dev` (every service and the embedded NATS in
# one process) and of the Postgres cluster, at a fixed rate of single-event
# requests from 8 keep-alive clients (BENCHMARKS.md, Efficiency, "Before
# and after this work, and what a wake-up costs here"). The load comes
# from LOADBIN (default bin/eventline) `bench --url`, which also registers
# one webhook endpoint (a local receiver) and reads the activity feed once
# a second. CPU time is utime+stime from
# /proc/<pid>/stat over WINDOW seconds after a 10 s lead-in; every process
# of the postgres user is counted (the cluster's background processes too).
# usage: scripts/devcpu.sh BIN RATE [WINDOW]
set -euo pipefail
BIN=$1 RATE=$2 WIN=${3:-20}
LOADBIN=${LOADBIN:-bin/eventline}
db=eventline_devcpu_$$
dir=$(mktemp -d) log=$(mktemp) out=$(mktemp)
createdb -h 127.0.0.1 -U postgres "$db"
"$BIN" dev --database-url "postgres://postgres@127.0.0.1:5432/$db?sslmode=disable" --dir "$dir" \
	--http-addr 127.0.0.1:18081 --nats-addr 127.0.0.1:0 >"$log" 2>&1 &
DEV=$!
cleanup() { kill $DEV 2>/dev/null || true; wait $DEV 2>/dev/null || true; dropdb -h 127.0.0.1 -U postgres --if-exists "$db"; rm -rf "$dir" "$log" "$out"; }
trap cleanup EXIT
for _ in $(seq 150); do grep -q '^el_' "$log" && break; sleep 0.2; done
KEY=$(grep '^el_' "$log" | tail -1)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
pgcpu() { local t=0 v; for p in $(pgrep -u postgres postgres); do v=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0); t=$((t + v)); done; echo $t; }
"$LOADBIN" bench --url http://127.0.0.1:18081 --key "$KEY" --rate "$RATE" --workers 8 --burst 0 --poll 1s \
	--warmup 3s --duration $((WIN + 15))s >"$out" 2>&1 &
LOAD=$!
sleep 10
a=$(cpu $DEV) pa=$(pgcpu)
sleep "$WIN"
b=$(cpu $DEV) pb=$(pgcpu)
wait $LOAD
tick=$((1000000 / $(getconf CLK_TCK)))
ev=$((RATE * WIN))
achieved=$(grep -o 'acknowledged.*' "$out" | head -1 || true)
echo "$(basename "$(dirname "$BIN")")/$(basename "$BIN") at $RATE events/s: dev $(((b - a) * tick / ev)) µs/event ($(echo "scale=3; ($b - $a) * $tick / 1000000 / $WIN" | bc) cores), Postgres $(((pb - pa) * tick / ev)) µs/event; total $((((b - a) + (pb - pa)) * tick / ev)) µs/event; load ${achieved:-?}"
