#!/usr/bin/env bash
# Runs eventline locally: a nats-server with JetStream at sync_interval:
# always (data under ./.eventline), the database migrations, a key for
# tenant "dev", and the services:
#   ingest     http://127.0.0.1:8080  (admin :9090)
#   projector  http://127.0.0.1:8081  (admin :9091)
#   webhooker  http://127.0.0.1:8082  (admin :9092, private webhook URLs allowed)
#   notifier   http://127.0.0.1:8083  (admin :9093; digests only when SMTP_URL is set)
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
GOBIN="$(go env GOPATH)/bin"
export NATS_URL="${NATS_URL:-nats://127.0.0.1:14222}"
export DATABASE_URL="${DATABASE_URL:-postgres://localhost:5432/eventline?sslmode=disable}"
mkdir -p .eventline bin
go build -o bin/ ./cmd/...

# Webhook secrets are sealed with EVENTLINE_SECRET_KEY. Locally a random key
# is kept in .eventline/secret.key (mode 600): deleting it makes the stored
# webhook secrets unreadable.
if [ -z "${EVENTLINE_SECRET_KEY:-}" ]; then
  if [ ! -s .eventline/secret.key ]; then
    (umask 077 && head -c 32 /dev/urandom | base64 >.eventline/secret.key)
  fi
  EVENTLINE_SECRET_KEY="$(cat .eventline/secret.key)"
  export EVENTLINE_SECRET_KEY
fi

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

if [ "$NATS_URL" = "nats://127.0.0.1:14222" ]; then
  "$GOBIN/nats-server" -c deploy/nats-dev.conf >.eventline/nats.log 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/14222) 2>/dev/null && break; sleep 0.1; done
fi

if ! bin/eventline migrate; then
  echo "Postgres is needed: set DATABASE_URL, or start it: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2
  exit 1
fi
key=$(bin/eventline keys create --tenant dev --scopes ingest,read,admin --description "make run" | tail -n 1)

HTTP_ADDR=127.0.0.1:8080 ADMIN_ADDR=127.0.0.1:9090 bin/ingest & pids+=($!)
HTTP_ADDR=127.0.0.1:8081 ADMIN_ADDR=127.0.0.1:9091 bin/projector & pids+=($!)
HTTP_ADDR=127.0.0.1:8082 ADMIN_ADDR=127.0.0.1:9092 WEBHOOK_ALLOW_PRIVATE=true bin/webhooker & pids+=($!)
if [ -n "${SMTP_URL:-}" ] && [ -z "${UNSUBSCRIBE_SECRET:-}" ]; then
  export UNSUBSCRIBE_SECRET="dev-only-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
fi
HTTP_ADDR=127.0.0.1:8083 ADMIN_ADDR=127.0.0.1:9093 PUBLIC_URL=http://127.0.0.1:8083 bin/notifier & pids+=($!)

cat <<MSG

eventline is running for tenant "dev". Key (ingest, read, admin):
  $key

Record an event:
  curl -sS -X POST http://127.0.0.1:8080/v1/events -H "Authorization: Bearer $key" \\
    -H 'Content-Type: application/json' \\
    -d '{"action":"closed","eventable":{"type":"card","id":"c42"},"creator":{"type":"user","id":"u7"},"parents":[{"type":"board","id":"b1"}]}'
Read the board's timeline:
  curl -sS http://127.0.0.1:8081/v1/timelines/board/b1 -H "Authorization: Bearer $key"
Watch the card as user u1, then read u1's inbox (or stream it):
  curl -sS -X PUT http://127.0.0.1:8083/v1/watches/card/c42/users/u1 -H "Authorization: Bearer $key"
  curl -sS http://127.0.0.1:8083/v1/users/u1/notifications -H "Authorization: Bearer $key"
  curl -sSN http://127.0.0.1:8083/v1/users/u1/notifications/stream -H "Authorization: Bearer $key"
Add a webhook:
  curl -sS -X POST http://127.0.0.1:8082/v1/webhooks -H "Authorization: Bearer $key" \\
    -H 'Content-Type: application/json' -d '{"url":"http://127.0.0.1:9999/hook","events":["*"]}'

MSG
wait -n "${pids[@]}"
