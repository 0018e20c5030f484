"""The state dir of ``ownercare run``: fresh by default, ``--resume`` keeps it, one run at a time.

Real files, real SQLite databases written through the store, real flocks; the whole command is
run for real in tests/ownercare/test_run_state.py.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ownercare.stack import change_word
from ownercare.statedir import (
    Held,
    StateDirError,
    claim,
    database_holds,
    resume_start,
)
from storage.store import Store
from vocab.severity import SEVERITIES

NOW = datetime(2026, 3, 1, 12, 30, 5, tzinfo=UTC)
T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z


def earlier_run(state: Path, *, assets: int = 2, last_ms: int = T0 + 3_600_000) -> str:
    """A state dir as a stopped `ownercare run` leaves it; the URL of its database."""
    (state / "logs").mkdir(parents=True)
    (state / "logs" / "worker.log").write_text("worker log\n")
    (state / "keys").mkdir()
    (state / "keys" / "ota-signing.pem").write_text("key\n")
    url = f"sqlite:///{state / 'ownercare.db'}"
    store = Store(url)
    store.upsert_signals([("vehicle", f"VIN{n}", "Vehicle.Speed", 0.0, last_ms)
                          for n in range(assets)])
    store.close()
    return url


def test_an_earlier_run_is_moved_aside_whole_and_the_new_run_starts_empty(
        tmp_path: Path) -> None:
    state = tmp_path / ".ownercare"
    url = earlier_run(state)
    claimed = claim(state, url, own_database=True, resume=False, now=NOW)
    try:
        aside = tmp_path / ".ownercare.old-20260301-123005"
        assert claimed.notice is not None
        assert "held an earlier run (0 alerts, 2 assets, event time up to 2026-01-05 01:00 UTC)" \
            in claimed.notice
        assert aside.name in claimed.notice
        assert (aside / "ownercare.db").exists()
        assert (aside / "keys" / "ota-signing.pem").read_text() == "key\n"
        assert (aside / "logs" / "worker.log").exists()
        assert sorted(p.name for p in state.iterdir()) == ["run.lock"]
        assert database_holds(url) == Held(0, 0, None)
        assert claimed.resumed is None
    finally:
        claimed.release()
    # The next fresh start moves this one aside too, under another name.
    (state / "logs").mkdir()
    again = claim(state, url, own_database=True, resume=False, now=NOW)
    again.release()
    assert (tmp_path / ".ownercare.old-20260301-123005-2" / "logs").is_dir()


def test_resume_keeps_the_database_and_forgets_faust_metadata(tmp_path: Path) -> None:
    state = tmp_path / "state"
    url = earlier_run(state, assets=3, last_ms=T0 + 2 * 86_400_000 + 5)
    (state / "faust" / "v1").mkdir(parents=True)
    claimed = claim(state, url, own_database=True, resume=True, now=NOW)
    claimed.release()
    assert claimed.resumed == Held(0, 3, T0 + 2 * 86_400_000 + 5)
    assert claimed.notice is not None
    assert claimed.notice.startswith(f"resuming on {state} (0 alerts, 3 assets")
    assert claimed.notice.endswith("the database carries on (alerts, cases, API keys)")
    assert (state / "ownercare.db").exists()
    assert not (state / "faust").exists()
    assert not list(tmp_path.glob("state.old-*"))
    # The resumed fleet starts at the midnight after the database's newest event.
    assert resume_start(claimed.resumed) == "2026-01-08T00:00:00Z"


def test_resume_on_nothing_says_so(tmp_path: Path) -> None:
    state = tmp_path / "new"
    claimed = claim(state, f"sqlite:///{state / 'ownercare.db'}", own_database=True,
                    resume=True, now=NOW)
    claimed.release()
    assert claimed.notice == f"nothing to resume in {state}: this run starts fresh"
    assert resume_start(claimed.resumed) is None


def test_a_fresh_directory_gets_no_notice(tmp_path: Path) -> None:
    claimed = claim(tmp_path / "s", f"sqlite:///{tmp_path / 's' / 'ownercare.db'}",
                    own_database=True, resume=False, now=NOW)
    claimed.release()
    assert claimed.notice is None


def test_files_ownercare_did_not_write_are_never_moved(tmp_path: Path) -> None:
    state = tmp_path / "home"
    url = earlier_run(state)
    (state / "thesis.tex").write_text("mine")
    with pytest.raises(StateDirError, match=r"did not write \(thesis.tex\)"):
        claim(state, url, own_database=True, resume=False, now=NOW)
    assert (state / "thesis.tex").read_text() == "mine"
    assert not list(tmp_path.glob("home.old-*"))


def test_a_state_dir_locked_by_a_run_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "s"
    url = f"sqlite:///{state / 'ownercare.db'}"
    first = claim(state, url, own_database=True, resume=False, now=NOW)
    try:
        with pytest.raises(StateDirError, match="is in use by a running `ownercare run`"):
            claim(state, url, own_database=True, resume=False, now=NOW)
        with pytest.raises(StateDirError, match="is in use"):
            claim(state, url, own_database=True, resume=True, now=NOW)
    finally:
        first.release()
    claim(state, url, own_database=True, resume=False, now=NOW).release()


def test_an_external_database_with_data_is_never_started_on_fresh(tmp_path: Path) -> None:
    url = earlier_run(tmp_path / "elsewhere")
    state = tmp_path / "state"
    with pytest.raises(StateDirError, match=r"already holds 0 alerts, 2 assets.*--resume"):
        claim(state, url, own_database=False, resume=False, now=NOW)
    claimed = claim(state, url, own_database=False, resume=True, now=NOW)
    claimed.release()
    assert claimed.resumed is not None
    assert claimed.resumed.assets == 2


def test_an_unreachable_database_is_one_clear_sentence_with_the_password_masked(
        tmp_path: Path) -> None:
    with pytest.raises(StateDirError) as caught:
        database_holds("postgresql://u:s3cret@127.0.0.1:1/nothing")
    assert "cannot open the database postgresql://u:***@127.0.0.1:1/nothing" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_database_of_an_older_schema_is_read_without_migrating_it(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE assets (asset_kind TEXT, asset_id TEXT, first_seen INT, "
                     "last_seen INT)")
        conn.execute("INSERT INTO assets VALUES ('vehicle', 'V', 1, ?)", (T0,))
    assert database_holds(f"sqlite:///{path}") == Held(0, 1, T0)
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"assets"}  # no alembic_version: nothing was migrated


@pytest.mark.parametrize(("before", "after", "word"), [
    (None, ("info", "open"), "opened"),
    (None, ("warning", "resolved"), "resolved"),  # opened and resolved between two looks
    (("info", "open"), ("warning", "open"), "escalated"),
    (("warning", "open"), ("critical", "open"), "escalated"),
    (("critical", "open"), ("warning", "open"), "downgraded"),
    (("warning", "open"), ("warning", "resolved"), "resolved"),
    (("info", "open"), ("critical", "resolved"), "resolved"),  # the status says more
    (("warning", "resolved"), ("warning", "open"), "reopened"),
    (("warning", "resolved"), ("critical", "open"), "reopened"),
    (("info", "open"), ("info", "open"), "updated"),
])
def test_console_lines_say_what_changed(before: tuple[str, str] | None, after: tuple[str, str],
                                        word: str) -> None:
    assert change_word(before, after) == word


def test_every_transition_has_a_word_and_only_new_alerts_open() -> None:
    states = list(itertools.product(SEVERITIES, ("open", "resolved")))
    words = {change_word(b, a) for b, a in itertools.product(states, states)}
    assert words == {"escalated", "downgraded", "resolved", "reopened", "updated"}
