#!/usr/bin/env bash
# Starts the whole of Herald on this machine: makes sure Postgres and
# RabbitMQ are up, builds, creates the database and applies the migrations,
# then runs one api, one dispatcher and one worker until Ctrl-C.
#
# Development settings only: an admin token, a development encryption key,
# plain-http and private (loopback) endpoints allowed. Override any of them
# with HERALD__SECTION__KEY variables.
set -euo pipefail
cd "$(dirname "$0")/.."

export HERALD__API__ADMIN_TOKEN="${HERALD__API__ADMIN_TOKEN:-dev-admin-token-change-me}"
# base64 of 32 bytes; for local development only.
export HERALD__SECURITY__ENCRYPTION_KEY="${HERALD__SECURITY__ENCRYPTION_KEY:-ZGV2LWtleS1kZXYta2V5LWRldi1rZXktZGV2LWtleSE=}"
export HERALD__SECURITY__ALLOW_HTTP="${HERALD__SECURITY__ALLOW_HTTP:-true}"
export HERALD__SECURITY__ALLOW_PRIVATE_TARGETS="${HERALD__SECURITY__ALLOW_PRIVATE_TARGETS:-true}"

scripts/services.sh
cargo build --release --bins
bin=target/release

"$bin/herald-api" migrate

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping Herald"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

"$bin/herald-api" serve & pids+=($!)
"$bin/herald-dispatcher" & pids+=($!)
"$bin/herald-worker" & pids+=($!)

echo "Herald is running: api on http://127.0.0.1:8080 (admin token: $HERALD__API__ADMIN_TOKEN); Ctrl-C stops it"
wait -n "${pids[@]}"
