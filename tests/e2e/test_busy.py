"""Your own edits reach the others while your own kernel is busy (issue 19).

Alice and Bob, two kernels, one room: a SharedText, a shared IntSlider and a Poll.
Bob starts a long ``time.sleep`` cell, then types, drags and votes in his page.

* With kernel subshells (JupyterLab's default ``commsOverSubshells: perCommTarget``,
  ipykernel 7), each change shows on Alice's page within 2 s while Bob's cell is
  still running: his kernel handles the widget messages on a subshell.
* With ``commsOverSubshells: disabled`` (a second JupyterLab, same relay), Bob's
  page says his changes are held while the cell runs, and all of them arrive when it
  ends.

Either way both pages agree character for character afterwards.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
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
    open_notebook,
    open_notebook7,
    screenshot,
    wait_for,
)
from .test_collab import peer_caret

if not Path(CHROMIUM).exists():
    pytest.skip(
        f"{CHROMIUM} is missing (bash scripts/install-browser.sh installs Debian's chromium)",
        allow_module_level=True,
    )

# What a peer must see of a change, at the latest (seconds).
LIVE = 2.0
TYPED = "Bob types while his cell runs."  # 30 characters
assert len(TYPED) == 30

POLL_CELL = """\
from livewidgets.jupyter.widgets import Chat, Poll
W.VBox([Poll("e2e/poll", "Tea or coffee?", ["Tea", "Coffee"]), Chat("e2e/chat")])
"""


def sleep_cell(seconds: int) -> str:
    # It prints the wall-clock bounds of the sleep: the test's observations of Bob's
    # changes on Alice's page must fall inside them.
    return f"import time\nt0 = time.time()\ntime.sleep({seconds})\nprint(t0, time.time())"


_RUN_ABOVE_JS = """
async (id) => {
  const app = window.jupyterapp;
  let panel = null;
  for (const w of app.shell.widgets('main')) if (w.id === id) panel = w;
  app.shell.activateById(id);
  panel.content.activeCellIndex = panel.content.widgets.length - 1;
  await app.commands.execute('notebook:run-all-above');
}
"""

# Start the last cell and return at once (the promise would wait for the cell).
_START_LAST_JS = """
(id) => {
  const app = window.jupyterapp;
  let panel = null;
  for (const w of app.shell.widgets('main')) if (w.id === id) panel = w;
  app.shell.activateById(id);
  panel.content.activeCellIndex = panel.content.widgets.length - 1;
  app.commands.execute('notebook:run-cell');
}
"""

_LAST_CELL_JS = """
(id) => {
  let panel = null;
  for (const w of window.jupyterapp.shell.widgets('main')) if (w.id === id) panel = w;
  const cells = panel.content.widgets;
  const cell = cells[cells.length - 1];
  return {state: cell.model.executionState, count: cell.model.executionCount,
          kernel: panel.sessionContext.session.kernel.status};
}
"""

_OUTPUTS_JS = """
(id) => {
  let panel = null;
  for (const w of window.jupyterapp.shell.widgets('main')) if (w.id === id) panel = w;
  const cells = panel.content.widgets;
  return cells[cells.length - 1].model.outputs.toJSON();
}
"""


def run_setup(notebook: Notebook) -> None:
    """Run every cell but the last (the sleep); fail on an error output."""
    notebook.page.evaluate(_RUN_ABOVE_JS, notebook.panel_id)
    errors = notebook.panel.locator('[data-mime-type="application/vnd.jupyter.error"]')
    if errors.count():
        raise AssertionError(f"{notebook.path} failed:\n{errors.first.inner_text()}")


def last_cell(notebook: Notebook) -> dict[str, Any]:
    return dict(notebook.page.evaluate(_LAST_CELL_JS, notebook.panel_id))


def start_sleep(notebook: Notebook) -> None:
    """Start the sleep cell and wait until the kernel is in it."""
    notebook.page.evaluate(_START_LAST_JS, notebook.panel_id)
    wait_for(
        lambda: (c := last_cell(notebook))["state"] == "running" and c["kernel"] == "busy",
        message=f"{notebook.path}: the sleep cell running, the kernel busy",
    )


def assert_busy(notebook: Notebook, what: str) -> None:
    state = last_cell(notebook)
    assert state["state"] == "running", f"the cell ended before {what}: {state}"


def wait_idle(notebook: Notebook, timeout: float) -> None:
    wait_for(
        lambda: last_cell(notebook)["state"] == "idle" and last_cell(notebook)["count"],
        timeout,
        f"{notebook.path}: the sleep cell to end",
    )


def busy_bounds(notebook: Notebook) -> tuple[float, float]:
    """(start, end) of the sleep, wall clock, as the ended cell printed them."""
    for output in notebook.page.evaluate(_OUTPUTS_JS, notebook.panel_id):
        if output.get("output_type") == "stream":
            start, end = str(output["text"]).split()
            return float(start), float(end)
    raise AssertionError("the sleep cell printed no bounds")


# --- reading and using the widgets ----------------------------------------------------------


def text_value(notebook: Notebook) -> str:
    return str(notebook.widget(".lw-text-input").input_value())


def slider_readout(notebook: Notebook) -> str:
    return str(notebook.widget(".widget-readout").inner_text()).strip()


def votes(notebook: Notebook, option: str) -> str:
    button = notebook.widget(f'.lw-poll button[data-option="{option}"]')
    return str(button.locator(".lw-poll-count").inner_text())


def chat_texts(notebook: Notebook) -> list[str]:
    return [
        str(t) for t in notebook.panel.locator(".jp-OutputArea .lw-chat-text").all_inner_texts()
    ]


def badge(notebook: Notebook) -> str:
    """The ConnectionStatus badge's text."""
    return str(notebook.widget(".lw-conn").inner_text())


def activities(notebook: Notebook) -> list[str]:
    """What the Presence bar says peers' kernels run ("running a cell in ...")."""
    found = notebook.panel.locator(".jp-OutputArea .lw-avatar-activity")
    return [str(t) for t in found.all_inner_texts()]


def held_lines(notebook: Notebook) -> list[str]:
    """The texts of the visible 'changes held' lines in the notebook's widgets."""
    lines = notebook.panel.locator(".jp-OutputArea .lw-held:not([hidden])")
    return [str(t) for t in lines.all_inner_texts()]


def drag_slider(notebook: Notebook, fraction: float) -> None:
    handle = notebook.widget(".noUi-handle")
    track = notebook.widget(".noUi-base").bounding_box()
    box = handle.bounding_box()
    assert track is not None and box is not None
    mouse = notebook.page.mouse
    mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    mouse.down()
    x = track["x"] + track["width"] * fraction
    mouse.move(x, track["y"] + track["height"] / 2, steps=8)
    mouse.up()


def open_pair(
    lab_a: LabServer, page_a: Any, lab_b: LabServer, page_b: Any, room: str, sleep: int
) -> tuple[Notebook, Notebook]:
    """Alice's and Bob's notebooks set up (widgets shown); Bob's ends in a sleep cell."""
    notebooks = []
    for lab, page, user, name in ((lab_a, page_a, "alice", "Alice"), (lab_b, page_b, "bob", "Bob")):
        cells = [*notebook_cells(room, user, name, POLL_CELL), sleep_cell(sleep)]
        notebook = open_notebook(page, lab.write_notebook(f"{room}-{user}.ipynb", cells))
        run_setup(notebook)
        notebooks.append(notebook)
    alice, bob = notebooks
    for notebook in notebooks:
        wait_for(lambda n=notebook: votes(n, "Coffee") == "0", message="the poll shown")
    assert slider_readout(alice) == slider_readout(bob) == "10"
    return alice, bob


def type_in(notebook: Notebook, text: str) -> None:
    notebook.widget(".lw-text-input").click()
    notebook.page.keyboard.press("Control+End")
    notebook.page.keyboard.type(text, delay=20)


# --- with kernel subshells (JupyterLab's default) ------------------------------------------


def test_bobs_changes_reach_alice_while_his_kernel_is_busy(
    lab: LabServer, alice_page: Any, bob_page: Any, room: str
) -> None:
    """Bob's kernel sleeps 20 s; meanwhile his typing (in three bursts of 10), his
    slider drag, his vote, a chat message and his caret each show on Alice's page
    within 2 s, and his page never says 'held'. Afterwards both pages agree."""
    alice, bob = open_pair(lab, alice_page, lab, bob_page, room, sleep=20)
    try:
        start_sleep(bob)
        seen: list[float] = []

        def live(predicate: Any, what: str) -> None:
            wait_for(predicate, LIVE, f"Alice to see {what} within {LIVE} s")
            seen.append(time.time())
            assert_busy(bob, f"Alice saw {what}")

        # Alice's Presence bar says what Bob's kernel runs: his notebook, busy since when.
        running = f"running a cell in {room}-bob.ipynb, busy "
        live(lambda: any(a.startswith(running) for a in activities(alice)), "Bob's busy cell")

        for i in range(0, 30, 10):
            type_in(bob, TYPED[i : i + 10])
            live(lambda n=i + 10: text_value(alice) == TYPED[:n], f"Bob's first {i + 10} chars")

        drag_slider(bob, 0.8)
        moved = wait_for(lambda: (v := slider_readout(bob)) != "10" and v, message="Bob's drag")
        assert 65 <= int(moved) <= 95, moved
        live(lambda: slider_readout(alice) == moved, f"the slider at {moved}")

        bob.widget('.lw-poll button[data-option="Coffee"]').click()
        live(lambda: votes(alice, "Coffee") == "1", "Bob's vote")

        bob.widget(".lw-chat-input").fill("Sent from a busy kernel")
        bob.widget(".lw-chat-input").press("Enter")
        live(lambda: chat_texts(alice) == ["Sent from a busy kernel"], "Bob's chat message")

        bob.widget(".lw-text-input").click()
        bob.page.keyboard.press("Control+Home")
        live(lambda: (c := peer_caret(alice, "Bob")) and c["before"] == "", "Bob's caret moved")
        assert held_lines(bob) == [], "Bob's page says 'held' although his kernel has subshells"
        assert "held" not in badge(bob)
        screenshot(alice.page, "busy-live-alice")

        wait_idle(bob, 20 + TIMEOUT)
        wait_for(lambda: activities(alice) == [], message="Bob shown idle after his cell")
        start, end = busy_bounds(bob)
        assert all(start < t < end for t in seen), (start, end, seen)
        # After the cell: both pages agree character for character.
        wait_for(lambda: text_value(bob) == text_value(alice) == TYPED, message="same text")
        assert slider_readout(alice) == slider_readout(bob) == moved
        assert votes(alice, "Coffee") == votes(bob, "Coffee") == "1"
        assert chat_texts(bob) == chat_texts(alice)
    finally:
        alice.shutdown()
        bob.shutdown()


# --- without kernel subshells ------------------------------------------------------------


@pytest.fixture(scope="module")
def lab_without_subshells(e2e_dir: Path, relay: RelayProcess) -> Iterator[LabServer]:
    """A second JupyterLab on the same relay with ``commsOverSubshells: disabled``."""
    base = e2e_dir / "no-subshells"
    settings = base / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "kernels-settings.jupyterlab-settings").write_text(
        json.dumps({"commsOverSubshells": "disabled"})
    )
    server = LabServer(
        base,
        {
            "LIVEWIDGETS_URL": relay.url,
            "LIVEWIDGETS_RUNTIME_DIR": str(base / "lw-runtime"),
            "LIVEWIDGETS_DATA_DIR": str(base / "lw-data"),
            "LIVEWIDGETS_HEARTBEAT": "1",
        },
    )
    server.start()
    yield server
    server.stop()


def test_without_subshells_bobs_page_says_his_changes_are_held_and_sends_them_after(
    lab: LabServer,
    lab_without_subshells: LabServer,
    alice_page: Any,
    bob_context: Any,
    room: str,
) -> None:
    """Bob's JupyterLab sends comm messages to the main shell: while his cell runs,
    his page says (role=status) that his changes are held, and Alice sees none of
    them; when the cell ends, everything arrives and both pages agree."""
    page = bob_context.new_page()
    subshell_ids: list[Any] = []

    def on_socket(socket: Any) -> None:
        def sent(payload: Any) -> None:
            raw = payload if isinstance(payload, bytes) else payload.encode()
            if b'"msg_type":"comm_msg"' in raw:
                found = re.search(rb'"subshell_id":(null|"[^"]*")', raw)
                subshell_ids.append(json.loads(found.group(1)) if found else None)

        socket.on("framesent", sent)

    page.on("websocket", on_socket)  # before goto: it must see the kernel's socket
    page.goto(lab_without_subshells.page_url(f"/lab/workspaces/e2e-{uuid.uuid4().hex[:10]}"))
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.started !== undefined", timeout=MS
    )
    page.evaluate("async () => { await jupyterapp.started; await jupyterapp.restored; }")
    alice, bob = open_pair(lab, alice_page, lab_without_subshells, page, room, sleep=10)
    try:
        start_sleep(bob)
        type_in(bob, TYPED)
        drag_slider(bob, 0.8)
        moved = wait_for(lambda: (v := slider_readout(bob)) != "10" and v, message="Bob's drag")
        bob.widget('.lw-poll button[data-option="Coffee"]').click()
        # Bob's text and poll say that his changes wait for the kernel.
        held = wait_for(lambda: len(lines := held_lines(bob)) >= 2 and lines, message="'held'")
        assert all("held" in line and "running cell" in line for line in held), held
        assert bob.widget(".lw-text").evaluate("e => e.classList.contains('lw-held-on')")
        # The kernel saw them arrive behind the cell: the badge counts them.
        wait_for(lambda: "held until the cell finishes" in badge(bob), message="badge: held")
        assert_busy(bob, "the held state showed")
        # ...and indeed nothing of them has reached Alice.
        assert text_value(alice) == "" and votes(alice, "Coffee") == "0"
        assert slider_readout(alice) == "10"
        screenshot(bob.page, "busy-held-bob")
        assert_busy(bob, "the checks of the held state ended")

        wait_idle(bob, 20 + TIMEOUT)
        # Everything arrives after the cell, nothing lost, and 'held' goes away.
        wait_for(lambda: text_value(alice) == TYPED, message="Alice to get Bob's text")
        assert text_value(bob) == TYPED
        wait_for(lambda: slider_readout(alice) == moved, message=f"Alice's slider at {moved}")
        wait_for(lambda: votes(alice, "Coffee") == "1", message="Alice to see Bob's vote")
        wait_for(lambda: held_lines(bob) == [], message="'held' gone from Bob's page")
        wait_for(lambda: "held" not in badge(bob), message="'held' gone from Bob's badge")
        assert subshell_ids and all(s is None for s in subshell_ids), subshell_ids
    finally:
        alice.shutdown()
        bob.shutdown()
        page.close()


# --- Notebook 7 -----------------------------------------------------------------------------


def test_notebook7_bobs_changes_reach_alice_while_his_kernel_is_busy(
    lab: LabServer, alice_page: Any, bob_context: Any, room: str
) -> None:
    """The same with Bob in Notebook 7 (its default commsOverSubshells): his kernel
    sleeps 10 s; his typing and his vote show on Alice's page within 2 s each."""
    cells = [*notebook_cells(room, "bob", "Bob", POLL_CELL), sleep_cell(10)]
    bob_path = lab.write_notebook(f"{room}-bob.ipynb", cells)
    alice_cells = [*notebook_cells(room, "alice", "Alice", POLL_CELL), sleep_cell(0)]
    alice = open_notebook(alice_page, lab.write_notebook(f"{room}-alice.ipynb", alice_cells))
    run_setup(alice)
    bob = open_notebook7(bob_context, lab, bob_path)
    try:
        run_setup(bob)
        wait_for(lambda: votes(bob, "Coffee") == "0", message="Bob's poll shown")
        start_sleep(bob)
        type_in(bob, TYPED[:10])
        wait_for(lambda: text_value(alice) == TYPED[:10], LIVE, "Alice to see Bob's text")
        assert_busy(bob, "Alice saw Bob's text")
        bob.widget('.lw-poll button[data-option="Coffee"]').click()
        wait_for(lambda: votes(alice, "Coffee") == "1", LIVE, "Alice to see Bob's vote")
        assert_busy(bob, "Alice saw Bob's vote")
        assert held_lines(bob) == []
        screenshot(bob.page, "busy-live-notebook7-bob")
    finally:
        alice.shutdown()
        bob.shutdown()
        bob.page.close()
