#!/usr/bin/env bash
# Makes sure Debian's tinyproxy is installed (the egress tests send
# deliveries through it as a real HTTP CONNECT proxy), installing the
# package when it is missing. Prints the binary's path. Run by the tests
# themselves, so the test command needs nothing else; as root, or with sudo.
# The tests run their own tinyproxy in the foreground with a config of their
# own; the package's service is not used (where a service manager runs, the
# package may start it on port 8888).
set -euo pipefail
BIN=/usr/bin/tinyproxy
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
SUDO=
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
# Two test processes may get here at once: one installs, the other waits.
exec 9>/tmp/herald-install-tinyproxy.lock
flock 9
if [ ! -x "$BIN" ]; then
  export DEBIAN_FRONTEND=noninteractive
  LOG=/tmp/herald-install-tinyproxy.log
  if ! $SUDO apt-get install -y --no-install-recommends tinyproxy >"$LOG" 2>&1; then
    $SUDO apt-get update -qq >>"$LOG" 2>&1 || true
    $SUDO apt-get install -y --no-install-recommends tinyproxy >>"$LOG" 2>&1 \
      || { cat "$LOG" >&2; echo "error: installing tinyproxy failed" >&2; exit 1; }
  fi
fi
echo "$BIN"
