"""Two users, two browser contexts, two kernels, one room: what one does, the other sees.

Alice and Bob each open their own notebook in JupyterLab; both notebooks connect to
the same room of a relay this suite started (the kernels find it through
``$LIVEWIDGETS_URL``) and show a ConnectionStatus, a Presence bar, a shared
IntSlider and a SharedText. Every check waits for what a person would see in the
page, with a deadline; one screenshot per scenario goes to test-artifacts/e2e/.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "playwright.sync_api",
    reason="playwright is not installed (bash scripts/install-browser.sh installs it)",
)
pytest.importorskip("jupyterlab", reason="jupyterlab is not installed (pip install jupyterlab)")

from .helpers import (
    CHROMIUM,
    MS,
    TIMEOUT,
    LabServer,
    Notebook,
    RelayProcess,
    notebook_cells,
    open_lab,
    open_notebook,
    screenshot,
    wait_for,
)

if not Path(CHROMIUM).exists():
    pytest.skip(
        f"{CHROMIUM} is missing (bash scripts/install-browser.sh installs Debian's chromium)",
        allow_module_level=True,
    )

Pair = tuple[Notebook, Notebook]


# --- reading the widgets ------------------------------------------------------------------


def slider_readout(notebook: Notebook) -> str:
    return str(notebook.widget(".widget-readout").inner_text()).strip()


def text_value(notebook: Notebook) -> str:
    return str(notebook.widget(".lw-text-input").input_value())


def connection_state(notebook: Notebook) -> str:
    return str(notebook.widget(".lw-conn-state").inner_text())


def queue(notebook: Notebook) -> int:
    """The queue depth the ConnectionStatus badge shows (writes not yet acknowledged)."""
    match = re.search(r"queue (\d+)", str(notebook.widget(".lw-conn-detail").inner_text()))
    return int(match.group(1)) if match else 0


def set_readout(notebook: Notebook, value: str) -> None:
    """Type ``value`` into the slider's readout, as a user does to set it exactly."""
    notebook.widget(".widget-readout").click()
    notebook.page.keyboard.press("Control+A")
    notebook.page.keyboard.type(value)
    notebook.page.keyboard.press("Enter")


# In a SharedText view: where the peer caret of ``name`` is drawn. ``before`` is the
# text that precedes it in the overlay; ``dx``/``dy`` how far the caret is from where
# the textarea lays out that text (measured independently, with a canvas and the
# textarea's own font and padding). Single-line texts only.
_CARET_JS = """
([el, name]) => {
  const wrap = el.closest('.lw-text-wrap');
  const textarea = wrap.querySelector('.lw-text-input');
  const label = [...wrap.querySelectorAll('.lw-caret-label')].find((l) => l.textContent === name);
  const carets = [...wrap.querySelectorAll('.lw-caret')];
  if (!label || carets.length === 0) return null;
  const labelBox = label.getBoundingClientRect();
  // The label is drawn at its caret's x: pick the caret nearest to it.
  const caret = carets.sort((a, b) =>
      Math.abs(a.getBoundingClientRect().left - labelBox.left) -
      Math.abs(b.getBoundingClientRect().left - labelBox.left))[0];
  const content = wrap.querySelector('.lw-text-mirror-content');
  const range = document.createRange();
  range.setStart(content, 0);
  range.setEndBefore(caret);
  const before = range.toString();
  const style = getComputedStyle(textarea);
  const ctx = document.createElement('canvas').getContext('2d');
  ctx.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
  const box = textarea.getBoundingClientRect();
  const x = box.left + textarea.clientLeft + parseFloat(style.paddingLeft)
      + ctx.measureText(before).width - textarea.scrollLeft;
  const y = box.top + textarea.clientTop + parseFloat(style.paddingTop) - textarea.scrollTop;
  const r = caret.getBoundingClientRect();
  return {before, dx: r.left - x, dy: r.top - y, height: r.height,
          lineHeight: parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.4,
          color: getComputedStyle(caret).getPropertyValue('--lw-peer').trim()};
}
"""


def peer_caret(notebook: Notebook, name: str) -> dict[str, Any] | None:
    overlay = notebook.widget(".lw-text-overlay")
    return notebook.page.evaluate(_CARET_JS, [overlay.element_handle(), name])


def caret_after(notebook: Notebook, name: str, before: str) -> dict[str, Any]:
    """Wait until ``name``'s caret is drawn right after ``before``; returns its geometry."""
    return wait_for(
        lambda: (c := peer_caret(notebook, name)) and c["before"] == before and c,
        message=f"{name}'s caret after {before!r}",
    )


def assert_caret_on_text(caret: dict[str, Any]) -> None:
    """The caret sits where the textarea draws that position (not just in the DOM)."""
    dx, dy, line = float(caret["dx"]), float(caret["dy"]), float(caret["lineHeight"])
    assert abs(dx) <= 2.0, f"caret is {dx:.1f} px off horizontally: {caret}"
    assert -line / 2 <= dy <= line / 2, f"caret is {dy:.1f} px off vertically: {caret}"
    assert float(caret["height"]) >= line * 0.6, f"caret is too short to see: {caret}"


def avatars(notebook: Notebook, name: str) -> int:
    """How many avatars of ``name`` the presence bar shows (the title starts with it)."""
    bar = notebook.widget(".lw-presence-bar")
    return int(bar.locator(f'.lw-avatar[title^="{name}:"], .lw-avatar[title^="{name} ("]').count())


# --- scenarios ----------------------------------------------------------------------------


def test_slider_moved_by_alice_shows_in_bobs_view(pair: Pair) -> None:
    """(a) Alice drags the shared slider, then types a value into its readout; Bob's
    slider shows each new value."""
    alice, bob = pair
    assert slider_readout(bob) == slider_readout(alice) == "10"

    handle = alice.widget(".noUi-handle")
    track = alice.widget(".noUi-base").bounding_box()
    box = handle.bounding_box()
    assert track is not None and box is not None
    page = alice.page
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] * 0.75, track["y"] + track["height"] / 2, steps=8)
    page.mouse.up()
    dragged = wait_for(
        lambda: (v := slider_readout(alice)) != "10" and v, message="Alice's slider to move"
    )
    assert 60 <= int(dragged) <= 90
    wait_for(lambda: slider_readout(bob) == dragged, message=f"Bob's slider at {dragged}")

    set_readout(alice, "42")
    wait_for(lambda: slider_readout(bob) == "42", message="Bob's slider at 42")
    screenshot(bob.page, "a-slider-bob")


def test_text_typed_by_alice_shows_in_bobs_view_with_her_cursor(pair: Pair) -> None:
    """(b) Alice types into the SharedText: Bob sees the text and Alice's caret at its
    end; she moves her caret and Bob's view follows; Bob's own insert before it
    shifts her caret along."""
    alice, bob = pair
    alice.widget(".lw-text-input").click()
    alice.page.keyboard.type("Hello from Alice", delay=15)
    wait_for(lambda: text_value(bob) == "Hello from Alice", message="Bob to see Alice's text")
    assert_caret_on_text(caret_after(bob, "Alice", "Hello from Alice"))

    for _ in range(5):
        alice.page.keyboard.press("ArrowLeft")
    caret = caret_after(bob, "Alice", "Hello from ")
    assert_caret_on_text(caret)
    screenshot(bob.page, "b-text-cursor-bob")

    bob_input = bob.widget(".lw-text-input")
    bob_input.click()
    bob.page.keyboard.press("Control+Home")
    bob.page.keyboard.type("Bob: ")
    wait_for(
        lambda: text_value(alice) == "Bob: Hello from Alice", message="Alice to see Bob's insert"
    )
    assert_caret_on_text(caret_after(bob, "Alice", "Bob: Hello from "))
    # Alice's own caret stayed in front of "Alice" in her view while Bob typed.
    selection = alice.widget(".lw-text-input").evaluate("t => [t.selectionStart, t.selectionEnd]")
    assert selection == [16, 16]


def test_presence_shows_alice_then_her_departure(
    lab: LabServer, alice_context: Any, bob_page: Any, room: str
) -> None:
    """(c) Bob's presence bar shows Alice (busy while her cell runs), and shows her
    gone once her page is closed and her kernel shut down."""
    bob_path = lab.write_notebook(f"{room}-bob.ipynb", notebook_cells(room, "bob", "Bob"))
    alice_path = lab.write_notebook(
        f"{room}-alice.ipynb",
        [*notebook_cells(room, "alice", "Alice"), "import time\ntime.sleep(3)"],
    )
    bob = open_notebook(bob_page, bob_path)
    bob.run_all()
    wait_for(lambda: avatars(bob, "Bob") == 1, message="Bob's own avatar")
    bob.widget(".lw-presence-bar").get_by_text("nobody else here yet").wait_for(timeout=MS)

    alice_page = open_lab(alice_context, lab)
    try:
        alice = open_notebook(alice_page, alice_path)
        alice.run_all()
        wait_for(lambda: avatars(bob, "Alice") == 1, message="Alice in Bob's presence bar")
        # Alice runs a long cell: her avatar shows a busy kernel, then idle again.
        alice_page.evaluate(
            "id => { jupyterapp.shell.activateById(id);"
            " jupyterapp.commands.execute('notebook:run-cell'); }",
            alice.panel_id,
        )
        alice_avatar = bob.widget('.lw-avatar[title^="Alice:"]')
        alice_avatar.locator(".lw-avatar-busy").wait_for(timeout=MS)
        screenshot(bob.page, "c-presence-alice-busy-bob")
        alice_avatar.locator(".lw-avatar-busy").wait_for(state="detached", timeout=MS)
        alice.shutdown()
    finally:
        alice_page.close()
    wait_for(lambda: avatars(bob, "Alice") == 0, message="Alice gone from Bob's presence bar")
    bob.widget(".lw-presence-bar").get_by_text("nobody else here yet").wait_for(timeout=MS)
    screenshot(bob.page, "c-presence-alice-gone-bob")
    bob.shutdown()


def test_connection_status_survives_a_relay_restart(pair: Pair, relay: RelayProcess) -> None:
    """(d) The relay stops: both badges say "reconnecting"; Alice keeps typing and Bob
    sets the slider, and their badges count the queued writes. The relay restarts on
    the same port and store: both badges say "connected" again, and each has every
    edit, from before the stop and from during it."""
    alice, bob = pair
    alice.widget(".lw-text-input").click()
    alice.page.keyboard.type("before the restart")
    wait_for(lambda: text_value(bob) == "before the restart", message="Bob to see the text")
    for notebook in (alice, bob):
        wait_for(lambda n=notebook: queue(n) == 0, message=f"{notebook.path}: nothing queued")

    relay.stop()
    try:
        for notebook in (alice, bob):
            wait_for(
                lambda n=notebook: connection_state(n).startswith("reconnecting"),
                message=f"{notebook.path}: 'reconnecting'",
            )
        alice.page.keyboard.type(", during it")
        set_readout(bob, "77")
        assert text_value(alice) == "before the restart, during it"
        for notebook in (alice, bob):
            wait_for(lambda n=notebook: queue(n) > 0, message=f"{notebook.path}: a queued write")
        screenshot(alice.page, "d-reconnecting-alice")
    finally:
        relay.start()  # same port, same store (also for the tests after this one)
    for notebook in (alice, bob):
        wait_for(
            lambda n=notebook: connection_state(n) == "connected" and queue(n) == 0,
            3 * TIMEOUT,
            f"{notebook.path}: 'connected' again, nothing queued",
        )
    wait_for(
        lambda: text_value(bob) == "before the restart, during it",
        message="Bob to get the text typed while the relay was down",
    )
    wait_for(
        lambda: slider_readout(alice) == "77",
        message="Alice to get the slider value set while the relay was down",
    )
    assert text_value(alice) == "before the restart, during it"
    assert slider_readout(bob) == "77"
    screenshot(bob.page, "d-reconnected-bob")
