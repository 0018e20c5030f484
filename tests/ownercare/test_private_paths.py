"""`ownercare run` keeps its state dir and logs to their owner."""

from __future__ import annotations

import stat
from pathlib import Path

from ownercare.stack import private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_directories_and_logs_lose_group_and_other_access(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    private(state, 0o700)
    assert mode(state) == 0o700
    log = state / "api.log"
    private(log, 0o600)  # created
    assert mode(log) == 0o600
    log.chmod(0o644)
    private(log, 0o600)
    assert mode(log) == 0o600


def test_a_stricter_mode_is_never_loosened(tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    log.touch()
    log.chmod(0o400)
    private(log, 0o600)
    assert mode(log) == 0o400
    state = tmp_path / "state"
    state.mkdir(mode=0o500)
    private(state, 0o700)
    assert mode(state) == 0o500
    state.chmod(0o700)
