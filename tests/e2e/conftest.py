"""Fixtures of the browser suite: one relay, one JupyterLab, one Chromium for the package;
a browser context per user (alice, bob); per test, a notebook (and a kernel) per user
in a room of the test's own.

The fixtures are lazy: modules skipped for a missing browser start nothing. Their
scope is this package, not the session: Playwright's sync API keeps an event loop
running in the main thread while it is open, and the asyncio tests that run after
this package need the main thread free of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LabServer,
    Notebook,
    RelayProcess,
    notebook_cells,
    open_lab,
    open_notebook,
    screenshot,
)

VIEWPORT = {"width": 1280, "height": 800}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: real JupyterLab + Chromium browser tests (deselect with -m 'not e2e')"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Keep each phase's report on the item, so fixtures can tell that the test failed.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="package")
def e2e_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="package")
def relay(e2e_dir: Path) -> Iterator[RelayProcess]:
    """The relay the kernels use (a subprocess, SQLite store, free port)."""
    relay = RelayProcess(e2e_dir / "rooms.db", e2e_dir / "relay.log")
    relay.start()
    yield relay
    relay.stop()


@pytest.fixture(scope="package")
def lab(e2e_dir: Path, relay: RelayProcess) -> Iterator[LabServer]:
    """JupyterLab whose kernels connect to ``relay`` ($LIVEWIDGETS_URL in their env)."""
    server = LabServer(
        e2e_dir,
        {
            "LIVEWIDGETS_URL": relay.url,
            # Nothing may touch the user's own local relay.
            "LIVEWIDGETS_RUNTIME_DIR": str(e2e_dir / "lw-runtime"),
            "LIVEWIDGETS_DATA_DIR": str(e2e_dir / "lw-data"),
            "LIVEWIDGETS_HEARTBEAT": "1",
        },
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="package")
def alice_context(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    yield context
    context.close()


@pytest.fixture(scope="package")
def bob_context(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    yield context
    context.close()


@pytest.fixture(scope="package")
def alice_page(alice_context: Any, lab: LabServer) -> Any:
    """Alice's JupyterLab tab (her notebooks open in it, one per test)."""
    return open_lab(alice_context, lab)


@pytest.fixture(scope="package")
def bob_page(bob_context: Any, lab: LabServer) -> Any:
    """Bob's JupyterLab tab."""
    return open_lab(bob_context, lab)


@pytest.fixture
def room(request: pytest.FixtureRequest) -> str:
    """A room of this test's own (tests share the relay, never a room)."""
    return "e2e-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")


@pytest.fixture
def pair(
    request: pytest.FixtureRequest, lab: LabServer, alice_page: Any, bob_page: Any, room: str
) -> Iterator[tuple[Notebook, Notebook]]:
    """Alice's and Bob's notebooks (two kernels) in the test's room, run to the end.

    Alice runs first, so she is in the room when Bob's widgets render. Both kernels
    are shut down afterwards; on failure both pages are saved as screenshots.
    """
    notebooks = []
    for page, user, name in ((alice_page, "alice", "Alice"), (bob_page, "bob", "Bob")):
        path = lab.write_notebook(f"{room}-{user}.ipynb", notebook_cells(room, user, name))
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
