#!/usr/bin/env bash
# Runs eventline locally: a nats-server with JetStream at sync_interval:
# always (data under ./.eventline) and eventline's NATS identities, the
# database migrations and the NATS provisioning (eventline migrate, as the
# NATS admin), a key for tenant "dev", and the services, each connecting to
# NATS as its own identity:
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

# NATS identities: a password each, kept in .eventline/nats-identities
# (eventline dev keeps its own there too). nats-server reads them from
# NATS_<IDENTITY>_PASSWORD (deploy/nats/auth.conf).
mkdir -p .eventline/nats-identities
chmod 700 .eventline/nats-identities
server_env=()
for id in admin ingest projector notifier webhooker auth sys; do
  f=.eventline/nats-identities/$id
  if [ ! -s "$f" ]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$f")
  fi
  server_env+=("NATS_${id^^}_PASSWORD=$(cat "$f")")
done
# pw IDENTITY: its password. Each binary connects as its own identity,
# with only its own password in its environment. With your own NATS_URL,
# set NATS_USER and NATS_PASSWORD (or NATS_CREDS ...) per service
# yourself, or give that server deploy/nats/auth.conf and these passwords.
pw() { cat ".eventline/nats-identities/$1"; }

# The auth callout lets tenant producers connect to NATS with their API key
# (docs/publishing-from-any-language.md): its key pair is kept in
# .eventline/nats-callout.env, the server's configuration is rendered with
# it into .eventline/nats-auth.conf, and ingest answers the callout.
if [ ! -s .eventline/nats-callout.env ]; then
  (umask 077 && bin/eventline nats callout-keys | grep '^NATS_CALLOUT_' >.eventline/nats-callout.env)
fi
callout_seed=$(sed -n 's/^NATS_CALLOUT_ISSUER_SEED=//p' .eventline/nats-callout.env)
callout_issuer=$(sed -n 's/^NATS_CALLOUT_ISSUER=//p' .eventline/nats-callout.env)
bin/eventline nats config --callout-issuer "$callout_issuer" >.eventline/nats-auth.conf
sed 's#^include "nats/auth.conf"#include "nats-auth.conf"#; s#store_dir: ".eventline/nats"#store_dir: "nats"#' deploy/nats-dev.conf >.eventline/nats.conf

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

if [ "$NATS_URL" = "nats://127.0.0.1:14222" ]; then
  (cd .eventline && exec env "${server_env[@]}" "$GOBIN/nats-server" -c nats.conf >nats.log 2>&1) &
  pids+=($!)
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/14222) 2>/dev/null && break; sleep 0.1; done
fi

if ! NATS_USER=admin NATS_PASSWORD=$(pw admin) bin/eventline migrate; then
  echo "eventline migrate needs Postgres (set DATABASE_URL, or start it: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start)" >&2
  echo "and NATS at $NATS_URL as the admin identity (.eventline/nats.log)" >&2
  exit 1
fi
key=$(bin/eventline keys create --tenant dev --scopes ingest,read,admin --description "make run" | tail -n 1)

NATS_USER=ingest NATS_PASSWORD=$(pw ingest) NATS_CALLOUT_ISSUER_SEED="$callout_seed" NATS_AUTH_PASSWORD=$(pw auth) NATS_SYS_PASSWORD=$(pw sys) \
  HTTP_ADDR=127.0.0.1:8080 ADMIN_ADDR=127.0.0.1:9090 bin/ingest & pids+=($!)
NATS_USER=projector NATS_PASSWORD=$(pw projector) HTTP_ADDR=127.0.0.1:8081 ADMIN_ADDR=127.0.0.1:9091 bin/projector & pids+=($!)
NATS_USER=webhooker NATS_PASSWORD=$(pw webhooker) HTTP_ADDR=127.0.0.1:8082 ADMIN_ADDR=127.0.0.1:9092 WEBHOOK_ALLOW_PRIVATE=true bin/webhooker & pids+=($!)
if [ -n "${SMTP_URL:-}" ] && [ -z "${UNSUBSCRIBE_SECRET:-}" ]; then
  export UNSUBSCRIBE_SECRET="dev-only-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
fi
NATS_USER=notifier NATS_PASSWORD=$(pw notifier) HTTP_ADDR=127.0.0.1:8083 ADMIN_ADDR=127.0.0.1:9093 PUBLIC_URL=http://127.0.0.1:8083 bin/notifier & pids+=($!)

cat <<MSG

eventline is running for tenant "dev". Key (ingest, read, admin):
  $key
NATS ($NATS_URL) lets in tenant producers with an API key as the token
(inbox prefix _INBOX.<tenant>; docs/publishing-from-any-language.md) and
eventline's identities, whose passwords are in
.eventline/nats-identities/ (e.g. nats --user admin --password "\$(cat .eventline/nats-identities/admin)" --inbox-prefix _INBOX_admin ...).

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
