#!/usr/bin/env bash
# Makes sure Postgres (127.0.0.1:5432) and RabbitMQ (127.0.0.1:5672) are up,
# starting the local Debian-packaged services if they are not, and waits
# until both accept connections. Used by the local run command and by CI.
set -euo pipefail

port_open() { (echo >"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 120); do
    port_open "$port" && return 0
    sleep 0.5
  done
  echo "error: $name is not listening on 127.0.0.1:$port" >&2
  return 1
}

if ! port_open 5432; then
  echo "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start || true
  else
    echo "error: PostgreSQL is not running and pg_ctlcluster is not available; start it yourself" >&2
  fi
fi
wait_port PostgreSQL 5432

if ! port_open 5672; then
  echo "starting RabbitMQ"
  if command -v rabbitmq-server >/dev/null; then
    rabbitmq-server -detached || true
  else
    echo "error: RabbitMQ is not running and rabbitmq-server is not available; start it yourself" >&2
  fi
fi
wait_port RabbitMQ 5672
if command -v rabbitmqctl >/dev/null; then
  rabbitmqctl await_startup --timeout 60 >/dev/null 2>&1 || true
fi
echo "PostgreSQL and RabbitMQ are up"
