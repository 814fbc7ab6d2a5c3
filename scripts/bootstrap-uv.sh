#!/usr/bin/env bash
# Put the uv that uv.lock pins into .venv-uv (a venv of its own, so nothing is installed
# into the system interpreter), checked against the wheel hashes uv.lock records, and
# print the path of its binary. Idempotent: a .venv-uv with that version is reused.
#
#   UV=$(bash scripts/bootstrap-uv.sh [PYTHON])
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${1:-${PYTHON:-python3}}
tools=.venv-uv

# "uv==X.Y.Z --hash=sha256:... --hash=..." from the lock's own entry for uv.
requirement=$("$PYTHON" - <<'PY'
import re, sys

lock = open("uv.lock", encoding="utf-8").read()
for block in lock.split("\n[[package]]\n"):
    if re.search(r'^name = "uv"$', block, re.M):
        version = re.search(r'^version = "([^"]+)"$', block, re.M).group(1)
        hashes = re.findall(r'hash = "(sha256:[0-9a-f]{64})"', block)
        print(f"uv=={version}", *(f"--hash={h}" for h in hashes))
        break
else:
    sys.exit("uv.lock has no entry for uv: add it to the dev group and run `uv lock`")
PY
)
version=${requirement%% *}
version=${version#uv==}

if [ ! -x "$tools/bin/uv" ] || [ "$("$tools/bin/uv" --version | cut -d' ' -f2)" != "$version" ]; then
  "$PYTHON" -m venv --clear "$tools" >&2
  echo "$requirement" >"$tools/requirements.txt"
  PIP_ROOT_USER_ACTION=ignore "$tools/bin/python" -m pip install --quiet \
    --disable-pip-version-check --require-hashes --only-binary=:all: \
    -r "$tools/requirements.txt" >&2
fi
echo "$PWD/$tools/bin/uv"
