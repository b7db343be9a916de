#!/usr/bin/env bash
# Prints the path of a promtool: the one on the PATH, else the one unpacked
# (not installed) from Debian's prometheus package into the same cache as
# scripts/check-deploy.sh uses, fetching it the first time. The metrics test
# runs it when it finds no promtool, so the test command needs nothing else.
set -euo pipefail
if command -v promtool >/dev/null; then
  command -v promtool
  exit 0
fi
CACHE=${HERALD_DEPLOY_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herald-deploy-check}
BIN=$CACHE/bin
if [ ! -x "$BIN/promtool" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$BIN"
  if ! (cd "$work" && apt-get download prometheus) >"$work/log" 2>&1; then
    apt-get update -qq >>"$work/log" 2>&1 || true
    (cd "$work" && apt-get download prometheus) >>"$work/log" 2>&1 \
      || { cat "$work/log" >&2; echo "error: apt-get download prometheus failed" >&2; exit 1; }
  fi
  dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
  # Another test run may be unpacking it too: install under a temporary
  # name, then rename (atomic).
  install -m 0755 "$work/root/usr/bin/promtool" "$BIN/promtool.$$"
  mv -f "$BIN/promtool.$$" "$BIN/promtool"
fi
echo "$BIN/promtool"
