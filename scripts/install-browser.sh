#!/usr/bin/env bash
# Makes sure Debian's Chromium and ChromeDriver are installed (the console's
# browser tests drive them through WebDriver), installing the packages when
# they are missing. Prints the chromedriver path. Run by the tests themselves,
# so the test command needs nothing else; as root, or with sudo.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo /usr/bin/chromedriver
  exit 0
fi
SUDO=
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
# Two test processes may get here at once: one installs, the other waits.
exec 9>/tmp/herald-install-browser.lock
flock 9
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y --no-install-recommends chromium chromium-driver >/tmp/herald-install-browser.log 2>&1; then
    $SUDO apt-get update -qq >>/tmp/herald-install-browser.log 2>&1 || true
    $SUDO apt-get install -y --no-install-recommends chromium chromium-driver >>/tmp/herald-install-browser.log 2>&1 \
      || { cat /tmp/herald-install-browser.log >&2; echo "error: installing chromium failed" >&2; exit 1; }
  fi
fi
echo /usr/bin/chromedriver
