"""Regenerate the README's screenshots in docs/img/ (not a test).

    python -m tests.e2e.readme_images

Starts a relay and JupyterLab in a temp dir (as the browser tests do), opens two
notebooks side by side in one JupyterLab window, two users in one room, lets them
type and move the slider, and saves:

* ``docs/img/two-users.png``: Ada's and Grace's notebooks, each showing the other's
  cursor, the same slider value and both in the presence bar;
* ``docs/img/widgets-dark.png``: poll, chat and state inspector in the dark theme;
* ``docs/img/reconnecting.png``: the connection badge while the relay is down.

Each PNG is reduced to a palette of 256 colours when Pillow is installed, to stay
well under 200 KB.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from .helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    GALLERY_CELL,
    LabServer,
    Notebook,
    RelayProcess,
    open_lab,
    open_notebook,
    set_theme,
    wait_for,
)

OUT = Path(__file__).resolve().parents[2] / "docs" / "img"

CELLS = """\
import ipywidgets as W
import livewidgets as lw
from livewidgets.jupyter import share
from livewidgets.jupyter.widgets import ConnectionStatus, Presence, SharedText

threshold = W.FloatSlider(0.5, min=0, max=1, step=0.05, description="Threshold")
share(threshold, path="model/threshold")
notes = SharedText("notes/meeting", rows=5, placeholder="Meeting notes: type here")
W.VBox([Presence(), threshold, notes, ConnectionStatus()])
"""


def connect(user: str, name: str, room: str = "readme") -> str:
    return (
        f'%load_ext livewidgets\n%livewidgets connect --room {room} --user {user} --name "{name}"'
    )


_HIDE_CODE_JS = """
(id) => {
  for (const panel of jupyterapp.shell.widgets('main')) {
    if (panel.id !== id) continue;
    for (const cell of panel.content.widgets) {
      if (cell.model.type === 'code') cell.inputHidden = true;
    }
    panel.node.querySelector('.jp-WindowedPanel-outer').scrollTop = 0;
  }
}
"""


def hide_code(notebook: Notebook) -> None:
    """Collapse every code cell's input, so the widgets are what shows."""
    notebook.page.evaluate(_HIDE_CODE_JS, notebook.panel_id)


def save(page: Any, name: str, *elements: Any, pad: int = 8) -> Path:
    """Screenshot the box around ``elements`` (plus ``pad`` px) into docs/img/<name>.png
    (a palette PNG)."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    boxes = [box for e in elements if (box := e.bounding_box())]
    left = max(0, min(b["x"] for b in boxes) - pad)
    top = max(0, min(b["y"] for b in boxes) - pad)
    right = max(b["x"] + b["width"] for b in boxes) + pad
    bottom = max(b["y"] + b["height"] for b in boxes) + pad
    clip = {"x": left, "y": top, "width": right - left, "height": bottom - top}
    page.screenshot(path=str(path), clip=clip)
    try:
        from PIL import Image
    except ImportError:
        return path
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    print(f"{path}: {path.stat().st_size // 1024} KB")
    return path


def wait_idle_avatar(notebook: Notebook) -> None:
    """Our own avatar shows the kernel busy until the presence bar's next refresh
    (up to 2 s after the cell finished): wait for that, for a calm picture."""
    notebook.panel.locator(".lw-avatar.lw-self .lw-avatar-busy").wait_for(state="detached")


def type_into(notebook: Notebook, text: str) -> None:
    """Type at the end of the SharedText (no newlines: JupyterLab takes Enter)."""
    notebook.widget(".lw-text-input").click()
    notebook.page.keyboard.press("Control+End")
    notebook.page.keyboard.type(text, delay=10)


def two_users(page: Any, lab: LabServer) -> None:
    ada_path = lab.write_notebook("ada.ipynb", [connect("ada", "Ada Lovelace"), CELLS])
    grace_path = lab.write_notebook("grace.ipynb", [connect("grace", "Grace Hopper"), CELLS])
    page.evaluate("() => jupyterapp.commands.execute('application:toggle-left-area')")
    ada = open_notebook(page, ada_path)
    ada.run_all()
    grace = open_notebook(page, grace_path, mode="split-right")
    grace.run_all()
    for notebook in (ada, grace):
        hide_code(notebook)
    ada.widget(".lw-text-input").fill("Agenda\n- pick a date for the demo\n")
    wait_for(lambda: "the demo" in grace.widget(".lw-text-input").input_value())
    type_into(grace, "- book a room")
    grace.widget(".widget-readout").click()
    page.keyboard.press("Control+A")
    page.keyboard.type("0.75")
    page.keyboard.press("Enter")
    wait_for(lambda: ada.widget(".widget-readout").inner_text().strip() == "0.75")
    # Ada puts her caret after "date"; each view shows the other's caret.
    ada.widget(".lw-text-input").click()
    ada.widget(".lw-text-input").evaluate(
        "t => { const i = t.value.indexOf(' for'); t.setSelectionRange(i, i);"
        " t.dispatchEvent(new Event('select')); }"
    )
    for notebook, name in ((grace, "Ada Lovelace"), (ada, "Grace Hopper")):
        notebook.widget(".lw-caret-label").get_by_text(name).wait_for()
        notebook.panel.locator(".jp-OutputArea .lw-avatar").nth(1).wait_for()
    # Wait until the name labels fold (3 s after a caret stops), so no text is covered.
    for notebook in (ada, grace):
        notebook.panel.locator(".lw-caret-label.lw-folded").first.wait_for(state="attached")
    for notebook in (ada, grace):
        wait_idle_avatar(notebook)
    page.mouse.move(0, 0)
    save(page, "two-users", page.locator("#jp-main-dock-panel"), pad=0)
    for notebook in (ada, grace):
        notebook.shutdown()


def gallery_dark(page: Any, lab: LabServer) -> None:
    path = lab.write_notebook(
        "gallery.ipynb",
        [
            connect("ada", "Ada Lovelace", "gallery"),
            CELLS,
            GALLERY_CELL.replace('"e2e/notes"', '"notes/meeting"').replace('"e2e', '"team'),
        ],
    )
    set_theme(page, "JupyterLab Dark")
    notebook = open_notebook(page, path)
    notebook.run_all()
    hide_code(notebook)
    notebook.widget(".lw-chat").get_by_text("merge sort is stable").wait_for()
    notebook.widget(".lw-caret").wait_for(state="attached")
    wait_idle_avatar(notebook)
    badge = notebook.widget(".lw-conn")
    wait_for(lambda: "queue" not in badge.inner_text(), message="every write acknowledged")
    outputs = notebook.panel.locator(".jp-OutputArea")
    save(page, "widgets-dark", outputs.nth(1), outputs.nth(2))
    notebook.shutdown()
    set_theme(page, "JupyterLab Light")


def reconnecting(page: Any, lab: LabServer, relay: RelayProcess) -> None:
    path = lab.write_notebook("badge.ipynb", [connect("ada", "Ada Lovelace", "badge"), CELLS])
    notebook = open_notebook(page, path)
    notebook.run_all()
    hide_code(notebook)
    relay.stop()
    type_into(notebook, "typed while the relay is down")
    badge = notebook.widget(".lw-conn")
    wait_for(lambda: "queue 1" in badge.inner_text() and "next try" in badge.inner_text())
    save(page, "reconnecting", notebook.panel.locator(".jp-OutputArea").nth(1))
    relay.start()
    notebook.shutdown()


def main() -> int:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: bash scripts/install-browser.sh", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="lw-readme-") as tmp:
        base = Path(tmp)
        relay = RelayProcess(base / "rooms.db", base / "relay.log")
        relay.start()
        lab = LabServer(
            base,
            {
                "LIVEWIDGETS_URL": relay.url,
                "LIVEWIDGETS_RUNTIME_DIR": str(base / "lw-runtime"),
                "LIVEWIDGETS_DATA_DIR": str(base / "lw-data"),
                "LIVEWIDGETS_HEARTBEAT": "1",
            },
        )
        try:
            lab.start()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                context = browser.new_context(viewport={"width": 1360, "height": 470})
                page = open_lab(context, lab)
                two_users(page, lab)
                page.set_viewport_size({"width": 1000, "height": 1000})
                gallery_dark(page, lab)
                reconnecting(page, lab, relay)
                browser.close()
        finally:
            lab.stop()
            relay.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
