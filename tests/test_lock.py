"""The locked test environment: uv.lock agrees with pyproject.toml, and test.sh uses it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _uv() -> str:
    # scripts/test.sh exports the uv it bootstrapped; the dev group also puts uv in the venv.
    found = os.environ.get("UV") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if not found:
        pytest.skip("uv is not installed (bash scripts/test.sh installs it)")
    return found


def _lock_check(project: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    return subprocess.run(
        [_uv(), "lock", "--check", "--offline", "--python", sys.executable],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _copy_project(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "src" / "livewidgets").mkdir(parents=True)
    return tmp_path


def test_lock_matches_pyproject() -> None:
    """uv.lock is up to date with pyproject.toml (else: run `uv lock` and commit it)."""
    result = _lock_check(ROOT)
    assert result.returncode == 0, result.stderr


def test_lock_check_fails_when_pyproject_changes(tmp_path: Path) -> None:
    """A dependency range edited without re-locking is caught by the same check."""
    project = _copy_project(tmp_path)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    assert '"msgspec>=0.18"' in text
    pyproject.write_text(text.replace('"msgspec>=0.18"', '"msgspec>=0.18.5"'))
    result = _lock_check(project)
    assert result.returncode != 0
    assert "needs to be updated" in result.stderr


def test_scripts_install_only_into_their_own_venvs() -> None:
    """test.sh syncs .venv with `uv sync --locked`; every other install names a venv."""
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert '"$UV" sync --quiet --locked' in script
    for name in ("test.sh", "bootstrap-uv.sh", "install-browser.sh"):
        for line in (ROOT / "scripts" / name).read_text().splitlines():
            if "pip install" in line:
                assert '--python "$venv/bin/python"' in line or "$tools/bin/python" in line, line


def test_bootstrapped_uv_is_the_locked_one() -> None:
    """The uv that test.sh bootstraps (hash-checked from uv.lock) is the one the lock pins."""
    version = subprocess.run(
        [_uv(), "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()[1]
    lock = (ROOT / "uv.lock").read_text()
    assert f'name = "uv"\nversion = "{version}"' in lock
