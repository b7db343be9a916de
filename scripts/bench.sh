#!/usr/bin/env bash
# Builds Herald in release mode and runs the end-to-end benchmark against
# the local Postgres and RabbitMQ. Arguments go to herald-bench:
#   --events N   events per throughput scenario (default 20000)
#   --quick      a tiny run (a few hundred events) that checks it works
#   --heavy      adds 10,000 webhooks and 1 million stored deliveries
# Results: target/bench/bench.json and target/bench/bench.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
cargo build --release --bins
exec target/release/herald-bench "$@"
