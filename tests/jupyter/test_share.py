"""share(): widget traits bound to shared paths, against a real relay, two sessions."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anywidget
import ipywidgets as W
import pytest
import traitlets

from livewidgets.client import Session
from livewidgets.jupyter import editing, share, unshare
from livewidgets.jupyter.runtime import set_current_session
from livewidgets.jupyter.share import bindings, default_path

Connect = Callable[..., Session]
Wait = Callable[..., Any]

TIMEOUT = 10.0  # for Ack.result/flush; waits on conditions use the wait_until fixture


class Custom(anywidget.AnyWidget):
    """A custom anywidget with JSON-able traits of every shape."""

    _esm = "export default { render() {} }"
    data = traitlets.Dict().tag(sync=True)
    items = traitlets.List().tag(sync=True)
    pair = traitlets.Tuple(traitlets.Int(), traitlets.Int(), default_value=(0, 0)).tag(sync=True)


def write(wait_until: Wait, writer: Session, path: str, value: Any, *readers: Session) -> int:
    """``writer`` sets ``path``; returns once the relay and every reader have it."""
    version = writer.set(path, value).result(TIMEOUT)
    wait_until(lambda: all(r.version >= version for r in readers), message="readers caught up")
    return version


def settle(wait_until: Wait, *sessions: Session) -> None:
    """Every write made so far is acknowledged, and every session saw the last one."""
    for session in sessions:
        session.flush(TIMEOUT)
    version = max(s.version for s in sessions)
    wait_until(lambda: all(s.version >= version for s in sessions), message="sessions caught up")


def test_local_change_reaches_the_other_widget(connect: Connect, wait_until: Wait) -> None:
    """A trait set in one session's widget shows up in the other's."""
    a, b = connect("alice"), connect("bob")
    sa, sb = W.IntSlider(), W.IntSlider()
    share(sa, path="x", session=a)
    settle(wait_until, a, b)
    share(sb, path="x", session=b)
    sa.value = 7
    wait_until(lambda: sb.value == 7, message="bob's slider at 7")


def test_remote_change_sets_trait_without_echo(connect: Connect, wait_until: Wait) -> None:
    """A shared change applied to the trait is not written back (no drunken slider)."""
    a, b = connect("alice"), connect("bob")
    write(wait_until, b, "x", 1, a)
    slider = W.IntSlider()
    binding = share(slider, path="x", session=a)
    assert slider.value == 1 and binding.writes == 0  # the shared value won on join
    first = b.set("x", 7).result(TIMEOUT)
    wait_until(lambda: slider.value == 7, message="slider at 7")
    binding.flush(TIMEOUT)
    # Had A echoed 7, the room would have sequenced it between B's two writes.
    assert b.set("sentinel", True).result(TIMEOUT) == first + 1
    assert binding.writes == 0 and binding.remote_updates == 2


def test_rapid_changes_are_coalesced_and_the_last_goes_out(
    connect: Connect, wait_until: Wait
) -> None:
    """A drag of 200 values costs a few writes, at most one per window, ending on the last."""
    a, b = connect("alice"), connect("bob")
    source, mirror = W.IntSlider(max=1000), W.IntSlider(max=1000)
    binding = share(source, path="x", session=a, debounce=0.2)
    settle(wait_until, a, b)  # b joins after a's join write: b adopts it
    share(mirror, path="x", session=b)
    start_version, start_writes = a.version, binding.writes
    started = time.monotonic()
    for value in range(1, 201):
        source.value = value
    elapsed = time.monotonic() - started
    binding.flush(TIMEOUT)
    wait_until(lambda: mirror.value == 200, message="mirror at the last value")
    writes = binding.writes - start_writes
    assert 1 <= writes <= 2 + int(elapsed / 0.2)
    assert a.version - start_version == writes  # the room sequenced exactly those


def test_trailing_edge_inside_the_window_is_sent(connect: Connect, wait_until: Wait) -> None:
    """A single change right after a write waits for the window, then goes out."""
    a, b = connect("alice"), connect("bob")
    slider = W.IntSlider()
    binding = share(slider, path="x", session=a, debounce=0.3)
    slider.value = 1  # leading edge: at once
    wait_until(lambda: b.get("x") == 1, message="leading write")
    slider.value = 2  # inside the window: waits for its end
    wait_until(lambda: b.get("x") == 2, message="trailing write")
    assert binding.writes == 3  # join + leading + trailing


def test_stale_remote_value_does_not_overwrite_a_waiting_local_one(
    connect: Connect, wait_until: Wait
) -> None:
    """While a local value waits for its window, a remote change does not move the trait."""
    a, b = connect("alice"), connect("bob")
    slider = W.IntSlider()
    share(slider, path="x", session=a, debounce=1.0)
    slider.value = 5
    a.flush(TIMEOUT)
    slider.value = 6  # waits up to 1 s
    b.set("x", 9).result(TIMEOUT)
    wait_until(lambda: a.state.get("x") == 9, message="alice's session saw 9")
    assert slider.value == 6
    wait_until(lambda: b.get("x") == 6, message="the local value went out after the window")
    assert slider.value == 6


def test_shared_value_wins_on_join_unless_push_local(connect: Connect, wait_until: Wait) -> None:
    """Join adopts the shared value; push_local=True writes the widget's instead."""
    a, b = connect("alice"), connect("bob")
    write(wait_until, b, "x", 3, a)
    joined, pusher = W.IntSlider(value=10), W.IntSlider(value=42)
    share(joined, path="x", session=a)
    assert joined.value == 3
    share(pusher, path="x", session=a, push_local=True)
    wait_until(lambda: b.get("x") == 42 and joined.value == 42, message="42 everywhere")


def test_empty_path_gets_the_widget_value(connect: Connect, wait_until: Wait) -> None:
    """Sharing onto an empty path writes the current value."""
    a, b = connect("alice"), connect("bob")
    share(W.Text(value="hello"), path="t", session=a)
    wait_until(lambda: b.get("t") == "hello", message="text written")


def test_unshare_stops_both_directions_after_sending_the_last_value(
    connect: Connect, wait_until: Wait
) -> None:
    """unshare() writes a waiting value, then neither side follows the other."""
    a, b = connect("alice"), connect("bob")
    slider = W.IntSlider()
    binding = share(slider, path="x", session=a, debounce=5.0)
    slider.value = 1  # leading edge
    slider.value = 2  # waiting for a 5 s window
    assert unshare(slider) == 1 and not binding.active and bindings(a) == []
    wait_until(lambda: b.get("x") == 2, message="the waiting value was sent")
    writes = binding.writes
    slider.value = 3
    b.set("x", 99).result(TIMEOUT)
    settle(wait_until, a, b)
    assert slider.value == 3 and binding.writes == writes and a.get("x") == 99


def test_binding_unshare_and_sharing_again_replaces(connect: Connect) -> None:
    """Sharing the same trait twice replaces the first binding; Binding.unshare ends it."""
    a = connect("alice")
    slider = W.IntSlider()
    first = share(slider, path="x", session=a)
    second = share(slider, path="y", session=a)
    assert not first.active and second.active and bindings(a) == [second]
    second.unshare()
    assert bindings(a) == [] and unshare(slider) == 0


def test_closing_the_widget_unshares(connect: Connect) -> None:
    """widget.close() ends its bindings."""
    a = connect("alice")
    slider = W.IntSlider()
    binding = share(slider, path="x", session=a)
    slider.close()
    assert not binding.active and bindings(a) == []


def test_coerced_value_is_not_written_back(connect: Connect, wait_until: Wait) -> None:
    """A slider clamping a remote value keeps it locally clamped, the shared value intact."""
    a, b = connect("alice"), connect("bob")
    slider = W.IntSlider(max=100)
    binding = share(slider, path="x", session=a)
    b.set("x", 500).result(TIMEOUT)
    wait_until(lambda: slider.value == 100, message="clamped to max")
    binding.flush(TIMEOUT)
    settle(wait_until, a, b)
    assert b.get("x") == 500 and binding.writes == 1  # only the join write


ROUND_TRIPS: dict[str, tuple[Callable[[], Any], str, Any]] = {
    "IntSlider": (lambda: W.IntSlider(max=100), "value", 42),
    "FloatSlider": (lambda: W.FloatSlider(max=1.0, step=0.01), "value", 0.25),
    "Text": (lambda: W.Text(), "value", "héllo 🌍"),
    "Textarea": (lambda: W.Textarea(), "value", "line 1\nline 2"),
    "Checkbox": (lambda: W.Checkbox(), "value", True),
    "Dropdown": (lambda: W.Dropdown(options=["a", "b", "c"], value="a"), "value", "c"),
    "ToggleButtons": (lambda: W.ToggleButtons(options=["x", "y"], value="x"), "value", "y"),
    "ColorPicker": (lambda: W.ColorPicker(value="#000000"), "value", "#ff8800"),
    "IntRangeSlider": (lambda: W.IntRangeSlider(value=(1, 2), max=10), "value", (3, 7)),
    "anywidget-dict": (lambda: Custom(), "data", {"k": [1, 2, {"deep": None}]}),
    "anywidget-list": (lambda: Custom(), "items", ["a", 1, 2.5, False]),
    "anywidget-tuple": (lambda: Custom(), "pair", (4, 5)),
}


@pytest.mark.parametrize(
    ("make", "trait", "value"), list(ROUND_TRIPS.values()), ids=list(ROUND_TRIPS)
)
def test_widget_kinds_round_trip(
    connect: Connect, wait_until: Wait, make: Callable[[], Any], trait: str, value: Any
) -> None:
    """Each supported widget kind (and a custom anywidget) syncs its trait both ways."""
    a, b = connect("alice"), connect("bob")
    wa, wb = make(), make()
    share(wa, trait, path="w", session=a)
    settle(wait_until, a, b)
    share(wb, trait, path="w", session=b)
    setattr(wa, trait, value)
    wait_until(lambda: getattr(wb, trait) == value, message=f"{trait} == {value!r} in b")
    setattr(wb, trait, getattr(make(), trait))
    wait_until(lambda: getattr(wa, trait) == getattr(wb, trait), message="back to a")


def test_default_path_comes_from_the_description(connect: Connect) -> None:
    """No path: widgets/<slug of description>/<trait>; no description: ValueError."""
    a = connect("alice")
    assert default_path(W.FloatSlider(description=" Température (°C) "), "value") == (
        "widgets/température-c/value"
    )
    binding = share(W.IntSlider(description="Speed"), session=a)
    assert binding.path == "widgets/speed/value"
    with pytest.raises(ValueError, match="needs path="):
        share(W.IntSlider(), session=a)


def test_unshareable_values_and_traits_raise_at_share_time(
    connect: Connect, wait_until: Wait
) -> None:
    """Non-JSON values, unknown traits and shared values the trait refuses: ValueError."""
    a, b = connect("alice"), connect("bob")
    with pytest.raises(ValueError, match="cannot share"):
        share(W.Dropdown(options=[("one", object())]), path="d", session=a)
    with pytest.raises(ValueError, match="no trait"):
        share(W.IntSlider(), "nope", path="x", session=a)
    write(wait_until, b, "x", "not a number", a)
    with pytest.raises(ValueError, match="does not fit"):
        share(W.IntSlider(), path="x", session=a)
    assert bindings(a) == []


def test_share_uses_the_kernel_session_by_default(connect: Connect) -> None:
    """Without session=, share() binds to the current session (or says how to get one)."""
    a = connect("alice")
    set_current_session(None)
    with pytest.raises(RuntimeError, match="livewidgets connect"):
        share(W.IntSlider(), path="x")
    set_current_session(a)
    try:
        assert share(W.IntSlider(), path="x").session is a
    finally:
        set_current_session(None)


def test_changes_from_another_thread_are_shared(connect: Connect, wait_until: Wait) -> None:
    """User code setting the trait on a background thread writes like the main thread."""
    import threading

    a, b = connect("alice"), connect("bob")
    slider = W.IntSlider()
    share(slider, path="x", session=a)
    thread = threading.Thread(target=lambda: setattr(slider, "value", 11))
    thread.start()
    thread.join(TIMEOUT)
    wait_until(lambda: b.get("x") == 11, message="written from the thread")


def test_peers_editing_a_shared_widget_show_in_its_tooltip(
    connect: Callable[..., Any], wait_until: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While Bob drags his slider, Alice's shows "Bob is editing" (quietly, in the
    tooltip); the hint goes away a moment after he stops, and an application's own
    tooltip is never replaced."""
    monkeypatch.setattr(editing, "HOLD", 0.3)
    alice, bob = connect("alice"), connect("bob", name="Bob")
    mine, theirs, labelled = W.IntSlider(), W.IntSlider(), W.IntSlider(tooltip="threshold")
    for widget, session in ((mine, alice), (theirs, bob), (labelled, alice)):
        share(widget, "value", "params/n", session=session)
    theirs.value = 5
    wait_until(lambda: mine.tooltip == "Bob is editing", message="the hint at alice")
    assert labelled.tooltip == "threshold"
    assert theirs.tooltip is None  # nobody else is editing
    wait_until(lambda: mine.tooltip is None, message="the hint gone after he stopped")
    assert mine.value == 5 and labelled.tooltip == "threshold"
