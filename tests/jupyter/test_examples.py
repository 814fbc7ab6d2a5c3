"""Every example notebook runs top to bottom, headless, against a relay the test started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from livewidgets import local_relay

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.ipynb"))


def test_there_are_examples() -> None:
    """The examples directory is where the tests look (five notebooks)."""
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_is_committed_without_outputs(path: Path) -> None:
    """Committed notebooks carry no outputs, execution counts or widget state."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    assert "widgets" not in notebook.metadata


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_headless(
    path: Path,
    relay_url: str,
    runtime_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    timeout: float,
) -> None:
    """nbclient executes the notebook in a fresh kernel ($LIVEWIDGETS_URL = our relay)."""
    monkeypatch.setenv("LIVEWIDGETS_URL", relay_url)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=int(3 * timeout),
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # The widgets were real: their state was stored for the page.
    assert notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]


@pytest.fixture
def local_relay_env(runtime_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """No $LIVEWIDGETS_URL: kernels use the local relay (in tmp), stopped at the end."""
    yield runtime_env
    local_relay.stop_relay()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_on_the_local_relay(
    path: Path, local_relay_env: dict[str, str], tmp_path: Path, timeout: float
) -> None:
    """The notebook also runs as a user runs it: on the local relay, which needs tokens.
    The kernel and the simulated peers (``lw.connect(relay_url(), ...)``) sign theirs."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=int(3 * timeout),
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "(local relay)" in text
    info = local_relay.read_info()
    assert info is not None and info.secret
