#!/usr/bin/env bash
# What a webhook's statistics cost on 1 million deliveries: a scratch
# database with one webhook, 1,000,000 events, deliveries and attempts
# spread over the last 7 days (10 % failed), the per-minute rollup filled
# as migration V11 fills it, then
#   - GET /v1/webhooks/{id}/stats?period=7d|24h|1h through a real api, timed
#     with curl (median of 20 calls each), and
#   - the same 7-day chart computed from the attempts themselves, without
#     the rollup (EXPLAIN ANALYZE), for comparison.
# Usage: bench/stats-1m.sh [binary directory, default target/release]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release}
db=herald_stats_bench_$$
port=18$((RANDOM % 900 + 100))
export HERALD__DATABASE__URL="postgres://postgres@127.0.0.1:5432/$db"
export HERALD__API__LISTEN="127.0.0.1:$port"
export HERALD__API__ADMIN_TOKEN="stats-bench-admin-token-0123456789"
export HERALD__SECURITY__ENCRYPTION_KEY="ZGV2LWtleS1kZXYta2V5LWRldi1rZXktZGV2LWtleSE="
export HERALD__SECURITY__ALLOW_HTTP=true HERALD__SECURITY__ALLOW_PRIVATE_TARGETS=true
export HERALD__AMQP__PREFIX="stats_bench_$$"
psql() { command psql -X -q -h 127.0.0.1 -U postgres "$@"; }

psql -d postgres -c "CREATE DATABASE $db"
api_pid=
cleanup() {
  [ -n "$api_pid" ] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null
  psql -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
}
trap cleanup EXIT
"$bin/herald-api" migrate >/dev/null
"$bin/herald-api" >/tmp/herald-stats-bench-api.log 2>&1 &
api_pid=$!
for _ in $(seq 100); do curl -sf "localhost:$port/healthz" >/dev/null && break; sleep 0.1; done
admin=(-H "authorization: Bearer $HERALD__API__ADMIN_TOKEN" -H 'content-type: application/json')
token=$(curl -sf "${admin[@]}" -d '{"name":"bench"}' "localhost:$port/v1/tenants" | python3 -c 'import sys,json;print(json.load(sys.stdin)["token"])')
auth=(-H "authorization: Bearer $token" -H 'content-type: application/json')
webhook=$(curl -sf "${auth[@]}" -d '{"name":"w","url":"http://127.0.0.1:9/"}' "localhost:$port/v1/webhooks" | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')

echo "loading 1,000,000 events, deliveries and attempts over 7 days"
start=$(date +%s.%N)
psql -d "$db" <<SQL
INSERT INTO events (tenant_id, id, event_type, data, occurred_at, received_at)
SELECT w.tenant_id, 'e' || g, 'order.created', '{"n":1}',
       now() - (g * interval '604 milliseconds'), now() - (g * interval '604 milliseconds')
FROM generate_series(1, 1000000) g, (SELECT tenant_id FROM webhooks WHERE id = '$webhook') w;
INSERT INTO deliveries (id, tenant_id, event_id, webhook_id, event_type, status, attempt_count, created_at, updated_at)
SELECT gen_random_uuid(), tenant_id, id, '$webhook', event_type,
       CASE WHEN right(id, 1) = '0' THEN 'failed' ELSE 'success' END, 1, received_at, received_at
FROM events;
INSERT INTO delivery_attempts (id, delivery_id, attempt, attempted_at, duration_ms, status_code)
SELECT gen_random_uuid(), id, 1, created_at, (random() * 400)::int,
       CASE WHEN status = 'failed' THEN 500 ELSE 200 END
FROM deliveries;
ANALYZE;
SQL
echo "loaded in $(python3 -c "import time;print(round(time.time()-$start,1))") s"

echo "filling the rollup as migration V11 does:"
psql -d "$db" -c '\timing on' -c "$(sed -n '/^INSERT INTO webhook_stats_minutely/,/^GROUP BY 1, 2;/p' migrations/V11__tenant_deletion_and_stats.sql)"
psql -d "$db" -t -c "SELECT count(*) || ' minute rows for the webhook' FROM webhook_stats_minutely"

for period in 7d 24h 1h; do
  times=$(for _ in $(seq 20); do
    curl -s -o /dev/null -w '%{time_total}\n' "${auth[@]}" "localhost:$port/v1/webhooks/$webhook/stats?period=$period"
  done | sort -n)
  echo "GET /v1/webhooks/{id}/stats?period=$period: median $(echo "$times" | sed -n 10p) s, max $(echo "$times" | tail -1) s (20 calls)"
done
curl -s "${auth[@]}" "localhost:$port/v1/webhooks/$webhook/stats?period=7d" | python3 -c 'import sys,json; t=json.load(sys.stdin)["totals"]; print("7d totals:", t)'

echo "the same 7-day chart from the attempts, without the rollup:"
psql -d "$db" -c "EXPLAIN (ANALYZE, SUMMARY ON, TIMING OFF)
  SELECT date_bin(interval '2 hours', a.attempted_at, now() - interval '7 days') b,
         count(*) FILTER (WHERE a.status_code BETWEEN 200 AND 299),
         percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms)
  FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
  WHERE d.webhook_id = '$webhook' AND a.attempted_at >= now() - interval '7 days'
  GROUP BY 1" | grep -E 'Execution Time'
