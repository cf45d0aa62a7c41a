#!/usr/bin/env bash
# What ON CONFLICT costs a delivery insert: 200,000 rows into a table shaped
# like webhook.deliveries (its indexes and fillfactor), inserted plainly and
# with ON CONFLICT (endpoint_id, event_id) DO NOTHING, alternating, in
# ROUNDS rounds; prints the milliseconds of each (BENCHMARKS.md, Webhooker).
# Usage: scripts/bench-onconflict.sh [database URL] (default: the local
# server's "postgres" database); scratch tables bench_oc_* are dropped after.
set -euo pipefail
url=${1:-postgres://postgres@127.0.0.1:5432/postgres}
rounds=${ROUNDS:-3}
psql -X -q "$url" <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench_oc_plain, bench_oc_conflict;
CREATE TABLE bench_oc_plain (id text PRIMARY KEY, tenant text NOT NULL, endpoint_id text NOT NULL, event_id text NOT NULL,
  event_seq bigint NOT NULL, event_type text NOT NULL, status text NOT NULL DEFAULT 'pending', attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz, last_attempt_at timestamptz, created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (endpoint_id, event_id)) WITH (fillfactor = 50);
CREATE INDEX ON bench_oc_plain (tenant, endpoint_id, id);
CREATE TABLE bench_oc_conflict (LIKE bench_oc_plain INCLUDING ALL) WITH (fillfactor = 50);
SQL
rows="SELECT gen_random_uuid()::text, 't1', 'ep-' || (i % 1000), 'ev-' || (i / 1000), i, 'card.closed', now() FROM generate_series(1, 200000) i"
cols="(id, tenant, endpoint_id, event_id, event_seq, event_type, next_attempt_at)"
timed() { # prints the milliseconds of one statement
	psql -X -q -At "$url" -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'
}
for r in $(seq 1 "$rounds"); do
	psql -X -q "$url" -c 'TRUNCATE bench_oc_plain, bench_oc_conflict'
	if (( r % 2 )); then order="plain conflict"; else order="conflict plain"; fi
	for kind in $order; do
		if [[ $kind == plain ]]; then
			echo "round $r plain    $(timed "INSERT INTO bench_oc_plain $cols $rows") ms"
		else
			echo "round $r conflict $(timed "INSERT INTO bench_oc_conflict $cols $rows ON CONFLICT (endpoint_id, event_id) DO NOTHING") ms"
		fi
	done
done
psql -X -q "$url" -c 'DROP TABLE bench_oc_plain, bench_oc_conflict'
