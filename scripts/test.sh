#!/usr/bin/env bash
# Install the test dependencies and run every test (the README's test command).
# Works on a fresh machine with Python >= 3.10, Node 20 and npm; idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

echo "== installing livewidgets and its test dependencies"
"$PYTHON" -m pip install --quiet --upgrade pip
"$PYTHON" -m pip install --quiet -e ".[test]"

if [ -f js/package.json ]; then
  echo "== front-end unit tests (vitest)"
  npm --prefix js ci --no-audit --no-fund --loglevel=error
  npm --prefix js test
fi

if [ -f scripts/install-browser.sh ]; then
  bash scripts/install-browser.sh
fi

echo "== lint and types"
"$PYTHON" -m ruff check src tests bench
"$PYTHON" -m mypy

echo "== python tests"
"$PYTHON" -m pytest -q "$@"
