"""Typing into the widgets inside JupyterLab: the notebook's own keyboard shortcuts must
not take keys meant for a widget's text field (ipywidgets' Textarea stops keydown
propagation for that reason)."""

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

from .helpers import CHROMIUM, LabServer, Notebook, notebook_cells, open_notebook, wait_for

if not Path(CHROMIUM).exists():
    pytest.skip(
        f"{CHROMIUM} is missing (bash scripts/install-browser.sh installs Debian's chromium)",
        allow_module_level=True,
    )

CHAT_CELL = 'from livewidgets.jupyter.widgets import Chat\nChat("e2e/chat")'

# Commands JupyterLab ran since the last call (to see a key taken by a shortcut).
_WATCH_JS = """
() => {
  if (!window.e2eCommands) {
    window.e2eCommands = [];
    jupyterapp.commands.commandExecuted.connect((_, args) => window.e2eCommands.push(args.id));
  }
  return window.e2eCommands.splice(0);
}
"""


@pytest.fixture(scope="module")
def notebook(lab: LabServer, alice_page: Any) -> Iterator[Notebook]:
    path = lab.write_notebook(
        "e2e-keyboard.ipynb", notebook_cells("e2e-keyboard", "alice", "Alice", CHAT_CELL)
    )
    notebook = open_notebook(alice_page, path)
    notebook.run_all()
    yield notebook
    notebook.shutdown()


def commands_run(notebook: Notebook) -> list[str]:
    return list(notebook.page.evaluate(_WATCH_JS))


def focus_text(notebook: Notebook, text: str) -> Any:
    field = notebook.widget(".lw-text-input")
    field.click()
    field.fill(text)
    field.press("End")
    commands_run(notebook)
    return field


def test_typing_letters_in_shared_text_runs_no_notebook_command(notebook: Notebook) -> None:
    """Letters that are command-mode shortcuts (a, b, x, m, d d) go into the text."""
    field = focus_text(notebook, "")
    notebook.page.keyboard.type("abxm dd")
    wait_for(lambda: field.input_value() == "abxm dd", message="the letters in the text")
    assert commands_run(notebook) == []


def test_enter_in_shared_text_inserts_a_newline(notebook: Notebook) -> None:
    """Enter starts a new line in the SharedText."""
    field = focus_text(notebook, "line one")
    notebook.page.keyboard.press("Enter")
    notebook.page.keyboard.type("line two")
    wait_for(lambda: "line two" in field.input_value(), message="the typing to land")
    assert field.input_value() == "line one\nline two"


def test_enter_in_chat_sends_the_message(notebook: Notebook) -> None:
    """Enter in the chat's message field sends the message (the form submits)."""
    field = notebook.widget(".lw-chat-input")
    field.click()
    field.fill("sent with Enter")
    field.press("Enter")
    notebook.widget(".lw-chat-list").get_by_text("sent with Enter").wait_for(timeout=5000)


def test_send_button_in_chat_sends_the_message(notebook: Notebook) -> None:
    """Clicking Send posts the message (the control for the Enter test above)."""
    field = notebook.widget(".lw-chat-input")
    field.fill("sent with the button")
    notebook.widget(".lw-chat").get_by_role("button", name="Send").click()
    notebook.widget(".lw-chat-list").get_by_text("sent with the button").wait_for(timeout=5000)
    assert field.input_value() == ""


def test_shift_enter_in_shared_text_does_not_run_the_cell(notebook: Notebook) -> None:
    """Shift+Enter while typing in the SharedText is a key for the text, not "run cell".
    (Last in the module: when it fails, the cell runs again.)"""
    focus_text(notebook, "some text")
    notebook.page.keyboard.press("Shift+Enter")
    assert "notebook:run-cell-and-select-next" not in commands_run(notebook)
