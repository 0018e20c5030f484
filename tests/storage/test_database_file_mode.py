"""The SQLite file holds webhook secrets and all telemetry: its owner's only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from storage.database import Database


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_file_is_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = Database(f"sqlite:///{tmp_path / 'new.sqlite'}")
        db.ping()
    finally:
        os.umask(old)
    assert mode(tmp_path / "new.sqlite") == 0o600
    for extra in ("new.sqlite-wal", "new.sqlite-shm"):  # SQLite copies the file's mode
        if (tmp_path / extra).exists():
            assert mode(tmp_path / extra) & 0o077 == 0, extra
    db.close()


def test_a_readable_file_is_tightened_and_a_stricter_one_kept(tmp_path: Path) -> None:
    loose, strict = tmp_path / "loose.sqlite", tmp_path / "strict.sqlite"
    for path, m in ((loose, 0o644), (strict, 0o400)):
        path.touch()
        path.chmod(m)
    Database(f"sqlite:///{loose}").close()
    assert mode(loose) == 0o600
    strict.chmod(0o600)  # SQLite must write the schema; then the user makes it stricter
    Database(f"sqlite:///{strict}").close()
    strict.chmod(0o400)
    Database(f"sqlite:///{strict}").close()
    assert mode(strict) == 0o400
