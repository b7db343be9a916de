#!/usr/bin/env bash
# Runs the comparison workloads of the generic webhook benchmark harness
# (W1: 20,000 single events to one endpoint; W2: 2,000 events to ten
# endpoints; W3: a steady 200 events/s, send -> delivered latency) against
# Herald's release binaries, each on a fresh database and AMQP prefix, with
# the harness's nginx receiver. Prints one JSON line per workload.
#
#   bench/harness.sh [HARNESS_DIR] [W1 W2 W3]
#
# HARNESS_DIR defaults to ../shared/bench-harness (beside the checkout).
# Needs nginx and Python 3 with aiohttp; build first with
# `cargo build --release --bins` (or set HERALD_BIN to a directory holding
# herald-api, herald-dispatcher and herald-worker, to compare two builds).
# HARNESS_DB_QUERY is appended to the database URL (for example
# `?options=-c%20plan_cache_mode%3Dforce_generic_plan`). Extra HERALD__…
# variables pass through to every process.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
harness=$(cd "${1:-../shared/bench-harness}" && pwd)
shift || true
workloads=("${@:-W1 W2 W3}")
read -r -a workloads <<<"${workloads[*]}"

bin=${HERALD_BIN:-$root/target/release}
work=$(mktemp -d /tmp/herald-harness.XXXXXX)
log=$work/nginx/logs/deliveries.log
mkdir -p "$work/nginx/logs"
admin=harness-admin-token
export HERALD__API__ADMIN_TOKEN=$admin
export HERALD__SECURITY__ENCRYPTION_KEY=ZGV2LWtleS1kZXYta2V5LWRldi1rZXktZGV2LWtleSE=
export HERALD__SECURITY__ALLOW_HTTP=true
export HERALD__SECURITY__ALLOW_PRIVATE_TARGETS=true
export HERALD__API__LISTEN=127.0.0.1:18090
export HERALD__DISPATCHER__LISTEN=127.0.0.1:19091
export HERALD__WORKER__LISTEN=127.0.0.1:19092
export RUST_LOG=${RUST_LOG:-warn}
api=http://127.0.0.1:18090

pids=()
stop_herald() {
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  pids=()
}
current=""
cleanup() {
  # A run stopped midway removes its workload's queues and database too.
  if [[ -n $current ]]; then finish_herald "$current"; fi
  stop_herald
  nginx -p "$work/nginx/" -c "$harness/nginx-receiver.conf" -s quit 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

nginx -p "$work/nginx/" -c "$harness/nginx-receiver.conf"

wait_for() { # url
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  return 1
}

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# start_herald NAME: a fresh database and prefix, then the three processes.
start_herald() {
  local name=$1
  export HERALD__DATABASE__URL=postgres://postgres@127.0.0.1:5432/harness_$name${HARNESS_DB_QUERY:-}
  export HERALD__AMQP__PREFIX=harness_${name}_$$
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS harness_$name" >/dev/null
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE harness_$name" >/dev/null
  "$bin/herald-api" migrate >/dev/null
  "$bin/herald-api" serve & pids+=($!)
  "$bin/herald-dispatcher" & pids+=($!)
  "$bin/herald-worker" & pids+=($!)
  wait_for "$api/healthz"
}

finish_herald() {
  stop_herald
  # rabbitmqctl reads its standard input: each gets /dev/null, or the
  # first would swallow the rest of the list.
  local q
  for q in $(rabbitmqctl -q list_queues name --no-table-headers </dev/null 2>/dev/null |
    grep "^$HERALD__AMQP__PREFIX" || true); do
    rabbitmqctl -q delete_queue "$q" </dev/null >/dev/null 2>&1 || true
  done
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS harness_$1 WITH (FORCE)" >/dev/null
}

# setup PATHS...: a tenant and one webhook per receiver path; prints its token.
setup() {
  local token
  token=$(curl -fsS -X POST "$api/v1/tenants" -H "Authorization: Bearer $admin" \
    -H 'Content-Type: application/json' -d '{"name":"harness"}' | json '["token"]')
  for path in "$@"; do
    curl -fsS -o /dev/null -X POST "$api/v1/webhooks" -H "Authorization: Bearer $token" \
      -H 'Content-Type: application/json' \
      -d "{\"url\":\"http://127.0.0.1:18080$path\",\"event_types\":[\"bench.event\"]}"
  done
  echo "$token"
}

body='{"event_type":"bench.event","data":{"seq":{{seq}},"ts":{{ts}}}}'

for w in "${workloads[@]}"; do
  current=${w,,}
  start_herald "$current"
  case $w in
    W1) token=$(setup /hook) ;;
    W2) token=$(setup "/hook?ep=0" "/hook?ep=1" "/hook?ep=2" "/hook?ep=3" "/hook?ep=4" \
      "/hook?ep=5" "/hook?ep=6" "/hook?ep=7" "/hook?ep=8" "/hook?ep=9") ;;
    W3) token=$(setup /hook-lat) ;;
    *) echo "unknown workload $w" >&2; exit 2 ;;
  esac
  # The webhooks reach every process's cache within its 0.5 s version check.
  sleep 1.5
  : >"$log"
  auth="Authorization: Bearer $token"
  case $w in
    W1 | W2)
      events=$([[ $w == W1 ]] && echo 20000 || echo 2000)
      python3 "$harness/loadgen.py" --url "$api/v1/events" -H "$auth" --body "$body" \
        -n "$events" -c 64 --csv "$work/lg.csv" >"$work/lg.json"
      sleep 1.2 # nginx flushes its log every second
      python3 "$harness/deliveries.py" "$log" --expect 20000 --idle 15 --wait 600 >/dev/null
      sleep 1.2
      echo "{\"workload\":\"$w\",\"loadgen\":$(cat "$work/lg.json"),\"count\":$(python3 "$harness/count_ids.py" "$log" /hook 20000 "$work/lg.json")}"
      ;;
    W3)
      python3 "$harness/loadgen.py" --url "$api/v1/events" -H "$auth" --body "$body" \
        -n 4000 -c 32 --rate 200 --csv "$work/lg.csv" >"$work/lg.json"
      sleep 1.2
      echo "{\"workload\":\"W3\",\"loadgen\":$(cat "$work/lg.json"),\"latency\":$(python3 "$harness/deliveries.py" "$log" --uri /hook-lat --expect 4000 --idle 15 --lat-csv "$work/lg.csv")}"
      ;;
  esac
  finish_herald "$current"
  current=""
done
