#!/usr/bin/env bash
# Runs eventline locally: a nats-server with JetStream at sync_interval:
# always (data under ./.eventline), the database migrations, a key for
# tenant "dev", and the ingest service on HTTP_ADDR (default :8080).
set -euo pipefail
cd "$(dirname "$0")/.."
GOBIN="$(go env GOPATH)/bin"
export NATS_URL="${NATS_URL:-nats://127.0.0.1:14222}"
export DATABASE_URL="${DATABASE_URL:-postgres://localhost:5432/eventline?sslmode=disable}"
export HTTP_ADDR="${HTTP_ADDR:-:8080}" ADMIN_ADDR="${ADMIN_ADDR:-:9090}"
mkdir -p .eventline bin
go build -o bin/ ./cmd/...

if [ "$NATS_URL" = "nats://127.0.0.1:14222" ]; then
  "$GOBIN/nats-server" -c deploy/nats-dev.conf >.eventline/nats.log 2>&1 &
  nats_pid=$!
  trap 'kill $nats_pid 2>/dev/null || true' EXIT
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/14222) 2>/dev/null && break; sleep 0.1; done
fi

if ! bin/eventline migrate; then
  echo "Postgres is needed: set DATABASE_URL, or start it: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2
  exit 1
fi
key=$(bin/eventline keys create --tenant dev --scopes ingest,read,admin --description "make run" | tail -n 1)
port="${HTTP_ADDR##*:}"
cat <<MSG

eventline ingest on http://127.0.0.1:$port (admin: ${ADMIN_ADDR}) — tenant "dev", key:
  $key
Try:
  curl -sS -X POST http://127.0.0.1:$port/v1/events -H "Authorization: Bearer $key" \\
    -H 'Content-Type: application/json' \\
    -d '{"action":"closed","eventable":{"type":"card","id":"c42"},"creator":{"type":"user","id":"u7"},"parents":[{"type":"board","id":"b1"}]}'

MSG
bin/ingest &
ingest_pid=$!
trap 'kill -TERM $ingest_pid 2>/dev/null; wait $ingest_pid; kill ${nats_pid:-} 2>/dev/null || true' INT TERM EXIT
wait $ingest_pid
