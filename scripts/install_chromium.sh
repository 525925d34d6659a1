#!/usr/bin/env bash
# Install Debian's chromium for the HTML report's browser tests (tests/report/test_html_browser.py).
# Idempotent and quiet: does nothing when /usr/bin/chromium is there; prints apt's log on failure.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends chromium; } \
    >"$log" 2>&1; then
  cat "$log" >&2
  echo "install_chromium.sh: could not install Debian's chromium (see apt's log above)" >&2
  exit 1
fi
