"""The History widget in a real browser: Alice and Bob each change the shared slider;
Alice's History shows both users' entries; she clicks "Revert to here" twice on her
own older entry and both pages show her value again."""

from __future__ import annotations

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
    LabServer,
    Notebook,
    notebook_cells,
    open_notebook,
    screenshot,
    wait_for,
)

if not Path(CHROMIUM).exists():
    pytest.skip(
        f"{CHROMIUM} is missing (bash scripts/install-browser.sh installs Debian's chromium)",
        allow_module_level=True,
    )

HISTORY_CELL = """\
from livewidgets import History
History()
"""


@pytest.fixture
def alice_with_history(
    request: pytest.FixtureRequest, lab: LabServer, alice_page: Any, bob_page: Any, room: str
) -> Iterator[tuple[Notebook, Notebook]]:
    """Like the ``pair`` fixture, with a History widget under Alice's widgets."""
    notebooks = []
    for page, user, name, extra in (
        (alice_page, "alice", "Alice", (HISTORY_CELL,)),
        (bob_page, "bob", "Bob", ()),
    ):
        cells = notebook_cells(room, user, name, *extra)
        path = lab.write_notebook(f"{room}-{user}.ipynb", cells)
        notebook = open_notebook(page, path)
        notebooks.append(notebook)
        notebook.run_all()
    yield notebooks[0], notebooks[1]
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for notebook, user in zip(notebooks, ("alice", "bob"), strict=True):
            screenshot(notebook.page, f"FAILED-{room}-{user}")
    for notebook in notebooks:
        notebook.shutdown()


def slider_readout(notebook: Notebook) -> str:
    return str(notebook.widget(".widget-readout").inner_text()).strip()


def set_readout(notebook: Notebook, value: str) -> None:
    """Type ``value`` into the slider's readout, as a user does to set it exactly."""
    notebook.widget(".widget-readout").click()
    notebook.page.keyboard.press("Control+A")
    notebook.page.keyboard.type(value)
    notebook.page.keyboard.press("Enter")


def entries(notebook: Notebook) -> list[tuple[str, str]]:
    """(user, op lines) per entry of the History, newest first."""
    rows = notebook.panel.locator(".jp-OutputArea .lw-history-entry")
    return [
        (
            str(rows.nth(i).locator(".lw-history-name").inner_text()),
            " | ".join(rows.nth(i).locator(".lw-history-op").all_inner_texts()),
        )
        for i in range(rows.count())
    ]


def test_alice_reverts_to_her_older_entry_from_the_history(
    alice_with_history: tuple[Notebook, Notebook],
) -> None:
    alice, bob = alice_with_history
    set_readout(alice, "20")
    wait_for(lambda: slider_readout(bob) == "20", message="Bob to see Alice's 20")
    set_readout(bob, "30")
    wait_for(lambda: slider_readout(alice) == "30", message="Alice to see Bob's 30")

    # Only the slider's path: typed in the filter box, a server-side query.
    alice.widget(".lw-history-path").fill("e2e/level")
    alice.widget(".lw-history-path").press("Enter")
    wait_for(
        lambda: entries(alice)[:2] == [("bob", "e2e/level = 30"), ("alice", "e2e/level = 20")],
        message="both users' entries in Alice's History",
    )
    assert all(ops.startswith("e2e/level") for _, ops in entries(alice))
    older = alice.panel.locator(".jp-OutputArea .lw-history-entry", has_text="e2e/level = 20").first
    button = older.get_by_role("button", name="revert to version")
    assert button.inner_text() == "Revert to here"
    button.click()
    armed = older.get_by_role("button", name="click again to revert")
    wait_for(lambda: armed.inner_text() == "Click again to revert", message="the armed button")
    armed.click()

    for notebook in (alice, bob):
        wait_for(lambda n=notebook: slider_readout(n) == "20", message="the reverted value")
    wait_for(
        lambda: "Reverted e2e/level to version" in alice.widget(".lw-history-notice").inner_text(),
        message="the notice",
    )
    wait_for(
        lambda: entries(alice)[0] == ("alice", "e2e/level = 20"),
        message="the revert on top of the History",
    )
    screenshot(alice.page, "history-revert")
