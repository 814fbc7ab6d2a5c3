"""The ``livewidgets relay`` command line (the crash test runs it as a real process)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from livewidgets.cli import build_parser, main


def test_relay_options_parse() -> None:
    """relay takes host, port, store, snapshot interval, frame size and log level."""
    args = build_parser().parse_args(
        [
            *["relay", "--host", "0.0.0.0", "--port", "9000", "--store", "memory://"],
            *["--snapshot-every", "50", "--max-frame-size", "4096", "--log-level", "debug"],
        ]
    )
    assert (args.host, args.port, args.store) == ("0.0.0.0", 9000, "memory://")
    assert (args.snapshot_every, args.max_frame_size, args.log_level) == (50, 4096, "debug")


def test_a_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a subcommand the CLI prints usage and exits with status 2."""
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2 and "relay" in capsys.readouterr().err


def test_bad_store_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unusable store URL or path is one error line and status 1, not a traceback."""
    assert main(["relay", "--port", "0", "--store", "postgres://nowhere"]) == 1
    assert "unsupported store URL" in capsys.readouterr().err
    missing = tmp_path / "missing" / "rooms.db"
    assert main(["relay", "--port", "0", "--store", f"sqlite:///{missing}"]) == 1
    assert "unable to open database file" in capsys.readouterr().err


def test_port_in_use_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    """A taken port is one error line and status 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["relay", "--port", str(port), "--store", "memory://"]) == 1
    assert "address already in use" in capsys.readouterr().err.lower()


def test_relay_process_garbage_collector_settings() -> None:
    """A relay's own process freezes its start-up heap and collects young objects
    rarely (relay.process); checked in a fresh interpreter, not in this one."""
    code = (
        "import gc; from livewidgets.relay.process import GC_THRESHOLDS, tune_garbage_collector;"
        "tune_garbage_collector();"
        "assert gc.get_threshold() == GC_THRESHOLDS, gc.get_threshold();"
        "assert gc.get_freeze_count() > 1000, gc.get_freeze_count()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_connection_limit_and_proxy_options_parse() -> None:
    """The connection caps and --trust-proxy (repeatable CIDRs) reach the policy's
    Limits; a malformed CIDR is a usage error, not a relay that trusts nobody."""
    from livewidgets.cli import _relay_security
    from livewidgets.relay.security import Limits

    args = build_parser().parse_args(
        [
            *["relay", "--store", "memory://", "--trust-proxy", "10.0.0.0/8"],
            *["--trust-proxy", "::1", "--max-connections-per-user", "5"],
            *["--max-connections-per-room", "3000", "--max-connections-per-ip", "7"],
        ]
    )
    assert args.trust_proxy == ["10.0.0.0/8", "::1"]
    policy, _ = _relay_security(args)
    limits: Limits = policy.limits
    assert (limits.max_connections_per_user, limits.max_connections_per_room) == (5, 3000)
    assert limits.max_connections_per_ip == 7
    defaults = build_parser().parse_args(["relay"])
    assert defaults.trust_proxy == [] and defaults.max_connections_per_ip == 2048
    with pytest.raises(SystemExit):
        build_parser().parse_args(["relay", "--trust-proxy", "10.0.0.0/99"])
