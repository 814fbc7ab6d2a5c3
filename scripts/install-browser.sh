#!/usr/bin/env bash
# Install what the browser tests (tests/e2e) need from outside the Python lock, on a fresh
# Debian machine, as root: Debian's chromium (Playwright drives /usr/bin/chromium; never
# `playwright install`, whose browser download does not work here). The Python side
# (playwright, JupyterLab, Notebook 7) is in the dev group of uv.lock. Idempotent and quiet;
# scripts/test.sh calls it.
set -euo pipefail

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-browser: /usr/bin/chromium is missing and this is not root on Debian;" \
      "the browser tests will be skipped" >&2
  else
    echo "== installing chromium (Debian)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
      >/dev/null
  fi
fi
