"""``livewidgets demo`` (``python -m livewidgets.demo``): starts the local relay and
JupyterLab on the examples, prints the URL, stops JupyterLab on SIGTERM.

The demo runs as a subprocess with its Jupyter config, settings, runtime files and
local relay in a temp dir, so nothing touches the user's own. When a browser is
available, the printed URL is opened and the first example runs to the end in it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from livewidgets.jupyter import local_relay

from .helpers import CHROMIUM, TIMEOUT, isolated_jupyter_env, open_url, screenshot, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HAVE_LAB = importlib.util.find_spec("jupyterlab") is not None
HAVE_BROWSER = Path(CHROMIUM).exists() and importlib.util.find_spec("playwright") is not None


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The demo's environment: Jupyter and the local relay under tmp_path. The relay
    the demo starts (and leaves running, by design) is stopped afterwards."""
    env = {
        **isolated_jupyter_env(tmp_path / "jupyter"),
        "LIVEWIDGETS_RUNTIME_DIR": str(tmp_path / "lw-runtime"),
        "LIVEWIDGETS_DATA_DIR": str(tmp_path / "lw-data"),
    }
    # Expose window.jupyterapp to drive the page; no news or update checks.
    config = Path(env["JUPYTER_CONFIG_DIR"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "jupyter_lab_config.json").write_text(
        json.dumps(
            {
                "LabApp": {
                    "expose_app_in_browser": True,
                    "news_url": None,
                    "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                }
            }
        )
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # local_relay below looks in the same place
    monkeypatch.delenv("LIVEWIDGETS_URL", raising=False)
    yield {**os.environ}
    local_relay.stop_relay()


def test_demo_without_jupyterlab_prints_the_install_hint(demo_env: dict[str, str]) -> None:
    """Without JupyterLab: one line naming the missing package and the pip command, exit 2."""
    code = (
        "import sys; sys.modules['jupyterlab'] = None\n"
        "from livewidgets.demo import main\n"
        "sys.exit(main(['--no-browser']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=demo_env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "jupyterlab" in lines[0], done.stderr
    assert 'pip install "livewidgets[demo]"' in lines[0]
    assert local_relay.read_info() is None  # it stopped before starting anything


@pytest.mark.skipif(not HAVE_LAB, reason="jupyterlab is not installed")
def test_demo_serves_the_examples_and_stops_on_sigterm(
    demo_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The demo copies the examples into --dir, starts the local relay and JupyterLab,
    prints a working URL (the first example runs in a browser when there is one), and
    on SIGTERM stops JupyterLab, exits 0, and leaves the relay running."""
    notebooks = tmp_path / "notebooks"
    out = tmp_path / "demo.out"
    with open(out, "wb") as sink:
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "livewidgets.demo",
                "--no-browser",
                "--port",
                "0",
                "--dir",
                str(notebooks),
            ],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=demo_env,
        )
    try:
        url = wait_for(
            lambda: (m := re.search(r"JupyterLab is at (\S+)", out.read_text())) and m.group(1),
            6 * TIMEOUT,
            "the demo to print JupyterLab's URL",
        )
        assert sorted(p.name for p in notebooks.glob("*.ipynb")) == sorted(
            p.name for p in EXAMPLES.glob("*.ipynb")
        )
        assert "/lab/tree/01_shared_slider.ipynb?token=" in url
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        relay = local_relay.find_relay()
        assert relay is not None, "the demo did not start the local relay"
        assert relay.url in out.read_text()
        if HAVE_BROWSER:
            run_first_example(request.getfixturevalue("browser"), url)

        demo.send_signal(signal.SIGTERM)
        assert demo.wait(6 * TIMEOUT) == 0, out.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    text = out.read_text()
    assert "JupyterLab stopped" in text and "keeps running" in text, text
    with pytest.raises((urllib.error.URLError, OSError)):
        urllib.request.urlopen(url, timeout=2)
    assert local_relay.find_relay() == relay  # the relay survives the demo, by design


def run_first_example(browser: Any, url: str) -> None:
    """Open the demo's URL, run the first example to the end: its slider and presence
    bar render and the simulated classmate's round trip left the slider at 1.5."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        notebook = open_url(context, url, "01_shared_slider.ipynb")
        notebook.run_all()
        notebook.widget(".lw-presence").wait_for(state="visible")
        readout = notebook.widget(".widget-readout")
        wait_for(lambda: readout.inner_text().strip() == "1.50", message="the slider at 1.50")
        notebook.widget(".lw-presence").scroll_into_view_if_needed()
        screenshot(notebook.page, "demo-01-shared-slider")
    finally:
        context.close()


def test_demo_copies_read_only_examples_and_keeps_edits(
    demo_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed (read-only) package: the examples are copied into the Jupyter data
    dir; a notebook the user already has there is not overwritten."""
    from livewidgets import demo

    source = tmp_path / "site-packages-examples"
    source.mkdir()
    (source / "01_a.ipynb").write_text("{}")
    (source / "02_b.ipynb").write_text("{}")
    target = local_relay.data_dir() / "livewidgets-demo"
    target.mkdir(parents=True)
    (target / "01_a.ipynb").write_text("my edits")
    with monkeypatch.context() as patch:
        patch.setattr(demo, "examples_source", lambda: source)
        patch.setattr(demo.os, "access", lambda path, mode: False)  # root writes anyway
        assert demo.prepare_notebooks(None) == target
    assert (target / "01_a.ipynb").read_text() == "my edits"
    assert (target / "02_b.ipynb").read_text() == "{}"
    # From a source checkout the examples are served in place.
    assert demo.prepare_notebooks(None) == EXAMPLES
