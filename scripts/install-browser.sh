#!/usr/bin/env bash
# Install what the browser tests (tests/e2e) need on a fresh Debian machine, as root:
# Debian's chromium (Playwright drives /usr/bin/chromium; never `playwright install`,
# whose browser download does not work here), and the Python side: playwright,
# JupyterLab and Notebook 7. Idempotent and quiet; scripts/test.sh calls it.
set -euo pipefail

PYTHON=${PYTHON:-python3}

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

PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check \
  "playwright>=1.40" "jupyterlab>=4,<5" "notebook>=7,<8"
