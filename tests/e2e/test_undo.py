"""Undo in a real browser: Alice's Ctrl-Z takes back her own typing in the SharedText,
never Bob's, on both pages; Ctrl-Shift-Z brings it back (docs/undo.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip(
    "playwright.sync_api",
    reason="playwright is not installed (bash scripts/install-browser.sh installs it)",
)
pytest.importorskip("jupyterlab", reason="jupyterlab is not installed (pip install jupyterlab)")

from .helpers import CHROMIUM, Notebook, screenshot, wait_for

if not Path(CHROMIUM).exists():
    pytest.skip(
        f"{CHROMIUM} is missing (bash scripts/install-browser.sh installs Debian's chromium)",
        allow_module_level=True,
    )


def text_value(notebook: Notebook) -> str:
    return str(notebook.widget(".lw-text-input").input_value())


def test_ctrl_z_undoes_only_alices_own_typing_on_both_pages(
    pair: tuple[Notebook, Notebook],
) -> None:
    alice, bob = pair
    alice.widget(".lw-text-input").click()
    alice.page.keyboard.type("Alice was here.", delay=15)
    wait_for(lambda: text_value(bob) == "Alice was here.", message="Bob to see Alice's text")

    bob.widget(".lw-text-input").click()
    bob.page.keyboard.press("Control+End")
    bob.page.keyboard.type(" Bob too.", delay=15)
    both = "Alice was here. Bob too."
    wait_for(lambda: text_value(alice) == both, message="Alice to see Bob's text")

    alice.widget(".lw-text-input").focus()
    alice.page.keyboard.press("Control+z")
    for page in (alice, bob):
        wait_for(lambda p=page: text_value(p) == " Bob too.", message="only Alice's text gone")
    screenshot(bob.page, "undo-bob")

    alice.page.keyboard.press("Control+Shift+z")
    for page in (alice, bob):
        wait_for(lambda p=page: text_value(p) == both, message="Alice's text back")
