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

from livewidgets import local_relay

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


def start_demo(notebooks: Path, out: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``python -m livewidgets.demo --no-browser --port 0 --dir notebooks``, output to ``out``."""
    command = [sys.executable, "-m", "livewidgets.demo", "--no-browser", "--port", "0"]
    with open(out, "wb") as sink:
        return subprocess.Popen(
            [*command, "--dir", str(notebooks)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )


def wait_for_url(out: Path) -> tuple[int, str]:
    """JupyterLab's pid and URL, once the demo printed them."""
    pattern = re.compile(r"JupyterLab \(pid (\d+)\) is at (\S+)")
    match = wait_for(
        lambda: pattern.search(out.read_text()), 6 * TIMEOUT, "the demo to print the URL"
    )
    return int(match.group(1)), match.group(2)


def pid_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def stop_demo(demo: subprocess.Popen[bytes], lab_pid: int | None) -> None:
    """Whatever happened, leave neither the demo nor its JupyterLab running."""
    if demo.poll() is None:
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(6 * TIMEOUT)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()
    if lab_pid is not None and pid_running(lab_pid):
        os.kill(lab_pid, signal.SIGTERM)


@pytest.mark.skipif(not HAVE_LAB, reason="jupyterlab is not installed")
def test_demo_serves_the_examples_and_stops_on_sigterm(
    demo_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The demo copies the examples into --dir, starts the local relay and JupyterLab,
    prints a working URL (the first example runs in a browser when there is one), and
    on SIGTERM stops JupyterLab, exits 0, and leaves the relay running."""
    notebooks = tmp_path / "notebooks"
    out = tmp_path / "demo.out"
    demo = start_demo(notebooks, out, demo_env)
    lab_pid = None
    try:
        lab_pid, url = wait_for_url(out)
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
        assert not pid_running(lab_pid)
    finally:
        stop_demo(demo, lab_pid)
    text = out.read_text()
    assert "JupyterLab stopped" in text and "keeps running" in text, text
    with pytest.raises((urllib.error.URLError, OSError)):
        urllib.request.urlopen(url, timeout=2)
    assert local_relay.find_relay() == relay  # the relay survives the demo, by design


@pytest.mark.skipif(
    not HAVE_LAB or sys.platform != "linux", reason="jupyterlab missing, or not Linux"
)
def test_demo_killed_outright_takes_jupyterlab_along(
    demo_env: dict[str, str], tmp_path: Path
) -> None:
    """SIGKILL to the demo (no chance to clean up): its JupyterLab gets SIGTERM from the
    kernel (PR_SET_PDEATHSIG) and exits; no server is left behind."""
    demo = start_demo(tmp_path / "notebooks", tmp_path / "demo.out", demo_env)
    lab_pid = None
    try:
        lab_pid, _ = wait_for_url(tmp_path / "demo.out")
        demo.kill()
        demo.wait()
        wait_for(lambda: not pid_running(lab_pid), 3 * TIMEOUT, "JupyterLab to exit")
    finally:
        stop_demo(demo, lab_pid)


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
