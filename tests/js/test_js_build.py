"""The committed front-end build and OT fixtures are up to date (no Node needed).

``npm --prefix js run build`` stamps every file in src/livewidgets/static with a
sha256 of js/src; here Python recomputes it. The OT fixtures the JS tests replay
are regenerated from the Python implementation and compared with the committed file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "js"
STATIC = ROOT / "src" / "livewidgets" / "static"
WIDGETS = [
    "shared_text",
    "presence",
    "connection_status",
    "poll",
    "chat",
    "state_inspector",
    "conflict_resolver",
    "answer_box",
    "history",
]
BANNER = re.compile(r"^/\* livewidgets build: sources sha256:([0-9a-f]{64}) ")


def source_hash() -> str:
    """The hash js/scripts/build.mjs writes: sorted names, each ``name\\0content\\0``."""
    digest = hashlib.sha256()
    for path in sorted((JS / "src").iterdir(), key=lambda p: p.name):
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_ot_fixtures", JS / "scripts" / "gen_ot_fixtures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_widget_is_built() -> None:
    """Each widget has a built ESM module with a default export, plus style.css."""
    for name in WIDGETS:
        text = (STATIC / f"{name}.js").read_text(encoding="utf-8")
        assert re.search(r"export\s*\{[^}]*\bas default\b", text), name
    assert (STATIC / "style.css").is_file()


def test_static_build_matches_the_sources() -> None:
    """The build stamp equals the hash of js/src: run `npm --prefix js run build` if not."""
    expected = source_hash()
    for path in [*(STATIC / f"{name}.js" for name in WIDGETS), STATIC / "style.css"]:
        match = BANNER.match(path.read_text(encoding="utf-8"))
        assert match, f"{path.name} has no build stamp"
        assert match.group(1) == expected, (
            f"{path.name} is stale: run `npm --prefix js run build` and commit "
            "src/livewidgets/static/"
        )


def test_ot_fixtures_match_the_python_implementation() -> None:
    """js/test/fixtures/ot.json is what the Python OT produces today."""
    generator = load_generator()
    committed = (JS / "test" / "fixtures" / "ot.json").read_text(encoding="ascii")
    assert committed == generator.render(), (
        "OT fixtures are stale: run `python js/scripts/gen_ot_fixtures.py` and "
        "`npm --prefix js test`"
    )


@pytest.mark.skipif(
    shutil.which("node") is None or not (JS / "node_modules" / "esbuild").is_dir(),
    reason="needs node and `npm --prefix js ci`",
)
def test_build_is_reproducible() -> None:
    """Rebuilding from js/src gives byte-identical files (esbuild pinned in the lockfile)."""
    result = subprocess.run(
        ["node", str(JS / "scripts" / "build.mjs"), "--check"],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
