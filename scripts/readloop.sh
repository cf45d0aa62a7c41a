#!/bin/bash
# CPU of one timeline read (GET /v1/activity?limit=200) on `eventline dev`:
# the dev process and every Postgres process, from /proc/<pid>/stat.
# usage: scripts/readloop.sh BIN DATABASE_URL DIR [READS]
# DATABASE_URL and DIR those of an earlier `BIN dev --demo` run (the events
# to read, and the state directory whose keys sealed its secrets).
set -euo pipefail
BIN=$1 DB=$2 DIR=$3 N=${4:-300}
log=$(mktemp)
"$BIN" dev --database-url "$DB" --dir "$DIR" --http-addr 127.0.0.1:18080 --nats-addr 127.0.0.1:0 >"$log" 2>&1 &
DEV=$!
trap 'kill $DEV 2>/dev/null; wait $DEV 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q '^el_' "$log" && break; sleep 0.2; done
KEY=$(grep '^el_' "$log" | tail -1)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
pgcpu() { local t=0 v; for p in $(pgrep -u postgres postgres); do v=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0); t=$((t + v)); done; echo $t; }
read_page() { curl -s -o /dev/null -H "Authorization: Bearer $KEY" "http://127.0.0.1:18080/v1/activity?limit=200"; }
for _ in $(seq 20); do read_page; done
a=$(cpu $DEV) pa=$(pgcpu)
for _ in $(seq "$N"); do read_page; done
b=$(cpu $DEV) pb=$(pgcpu)
tick=$((1000 / $(getconf CLK_TCK)))
echo "$(basename "$BIN"): dev process $(echo "scale=2; ($b - $a) * $tick / $N" | bc) ms/read, Postgres $(echo "scale=2; ($pb - $pa) * $tick / $N" | bc) ms/read"
