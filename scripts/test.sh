#!/usr/bin/env bash
# Install the test dependencies and run every test (the README's test command).
#
#   bash scripts/test.sh [PYTEST_ARGS...]            the locked environment (.venv, from uv.lock)
#   bash scripts/test.sh --latest [PYTEST_ARGS...]   the newest versions that resolve (.venv-latest)
#   bash scripts/test.sh --lowest [PYTEST_ARGS...]   the lowest versions pyproject.toml allows for
#                                                    direct dependencies (.venv-lowest)
#
# Works on a fresh machine with Python >= 3.10, Node 20 and npm; idempotent. It never
# installs into the interpreter it starts from: uv (the version uv.lock pins, hash-checked)
# goes into .venv-uv, everything else into the environment of the chosen mode.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=locked
case "${1:-}" in
  --latest | --lowest) mode=${1#--}; shift ;;
esac

PYTHON=${PYTHON:-python3}
export UV_PYTHON_DOWNLOADS=never # use $PYTHON; never download an interpreter
export UV_NO_PROGRESS=1

echo "== bootstrapping uv into .venv-uv (version and hashes from uv.lock)"
UV=$(bash scripts/bootstrap-uv.sh "$PYTHON")
export UV # tests/test_lock.py checks the lock with the same uv

case "$mode" in
  locked)
    venv=.venv
    echo "== syncing $venv from uv.lock"
    "$UV" sync --quiet --locked --all-extras --python "$PYTHON"
    # Resolve once online without writing (--dry-run), fetching afresh (--refresh): this
    # fills uv's cache with the index data tests/test_lock.py needs to re-resolve
    # offline on a fresh machine (~8 s).
    "$UV" lock --dry-run --refresh --quiet --python "$PYTHON"
    ;;
  latest | lowest)
    venv=.venv-$mode
    resolution=highest
    [ "$mode" = lowest ] && resolution=lowest-direct
    echo "== resolving the $mode versions (--resolution $resolution) into $venv"
    requirements=$(mktemp)
    trap 'rm -f "$requirements"' EXIT
    "$UV" pip compile --quiet --python "$PYTHON" --resolution "$resolution" --all-extras \
      --group pyproject.toml:dev --no-header --no-annotate -o "$requirements" pyproject.toml
    "$UV" venv --quiet --clear --python "$PYTHON" "$venv"
    "$UV" pip sync --quiet --python "$venv/bin/python" "$requirements"
    "$UV" pip install --quiet --python "$venv/bin/python" --no-deps -e .
    echo "== $mode versions of the direct dependencies:"
    "$UV" pip list --python "$venv/bin/python" --format freeze \
      | grep -iE '^(websockets|msgspec|prometheus.client|traitlets|pyjwt|ipywidgets|anywidget|ipykernel|jupyterlab|redis|pycrdt|pycrdt.websocket|matplotlib|pytest|mypy|ruff)==' \
      | tr '\n' ' '
    echo
    ;;
esac

# Everything below runs inside $venv: kernels started by name ("python3") run its python.
export VIRTUAL_ENV=$PWD/$venv
export PATH=$VIRTUAL_ENV/bin:$PATH
PY=$VIRTUAL_ENV/bin/python

if [ -f js/package.json ]; then
  echo "== front-end unit tests (vitest; versions locked in js/package-lock.json)"
  npm --prefix js ci --no-audit --no-fund --loglevel=error
  npm --prefix js test
fi

bash scripts/install-browser.sh

if [ "$mode" = lowest ]; then
  # Lint and type rules belong to the tool versions (ruff 0.5 and ruff 0.17 flag different
  # things); they judge our code with the locked tools, the lowest run judges compatibility.
  echo "== lint and types: skipped with --lowest (they run with the locked and latest tools)"
else
  echo "== lint and types"
  "$PY" -m ruff check src tests bench
  "$PY" -m mypy
fi

echo "== python tests"
"$PY" -m pytest -q "$@"
