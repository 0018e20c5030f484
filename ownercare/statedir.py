"""The state dir of ``ownercare run``: a fresh start by default, ``--resume`` to continue, and
never two runs on one directory.

A run leaves its SQLite database, the demo OTA keys, logs and Faust's table metadata behind.
Started again on them, the new run would serve the old run's alerts and chargers as if they
were new and send the simulated cars back in event time (the fleet starts at ``--start``
again), so by default the old directory is moved aside, whole, to
``<state dir>.old-<timestamp>``: nothing is deleted, and a fresh run is what a newcomer expects.

``--resume`` continues on it instead: the database (alerts, cases, API keys, OTA campaigns),
the OTA keys and, on disk, the embedded Kafka's log (``ownercare.embedded_kafka``: records not
yet processed, committed offsets, the detectors' states) and the embedded MQTT broker's journal
(``ownercare.mqtt_journal``: what it owes the bridge); the simulated fleet starts where the
database's event time left off.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from sqlalchemy import column, create_engine, func, inspect, select, table
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from config.settings import mask_url
from vocab.eventtime import DAY_MS

# What `ownercare run` writes into its state dir; anything else is not ours to move.
OWN_ENTRIES = frozenset({"ownercare.db", "ownercare.db-wal", "ownercare.db-shm",
                         "ownercare.db-journal", "keys", "logs", "faust", "run.json", "run.lock",
                         "supervisor.json", "kafka", "mqtt"})
LOCK_NAME = "run.lock"
# The newest event time an asset reported, by the names the schema has given that column.
ASSET_LAST_SEEN = ("last_seen_event_ms", "last_seen")


class StateDirError(Exception):
    """A state dir or database ``ownercare run`` must not start on; the message says why and
    what to do."""


@dataclass(frozen=True)
class Held:
    """What a database holds: alerts, assets and the newest event time (epoch ms) any asset
    reported."""

    alerts: int
    assets: int
    fleet_now_ms: int | None

    @property
    def empty(self) -> bool:
        return self.alerts == 0 and self.assets == 0

    def describe(self) -> str:
        text = f"{self.alerts} alert{'s' * (self.alerts != 1)}, {self.assets} " \
               f"asset{'s' * (self.assets != 1)}"
        if self.fleet_now_ms is not None:
            text += f", event time up to {format_ms(self.fleet_now_ms)}"
        return text


@dataclass
class Claim:
    """The state dir this run owns (its lock held until :meth:`release`), and what to tell the
    user about it."""

    notice: str | None
    resumed: Held | None  # what the database held, when resuming on it
    lock: IO[str] | None = None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()  # closing the file drops the flock
            self.lock = None


def format_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def resume_start(held: Held | None) -> str | None:
    """Where a resumed fleet starts: the midnight (UTC) after the database's newest event, so
    its event time only moves forward and the cars start parked at home, as at any start."""
    if held is None or held.fleet_now_ms is None:
        return None
    midnight = (held.fleet_now_ms // DAY_MS + 1) * DAY_MS
    return datetime.fromtimestamp(midnight / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def database_holds(url: str, source: str = "") -> Held:
    """Count what the database at ``url`` holds, without creating or migrating anything.

    StateDirError when it cannot be opened: the message names the URL (password masked),
    ``source`` (where the URL came from, if worth saying) and the driver's reason.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StateDirError(f"OWNERCARE_DATABASE_URL={mask_url(url)!s} is not a database URL "
                            f"({exc})") from None
    if parsed.drivername.startswith("sqlite") and parsed.database \
            and not Path(parsed.database).exists():
        return Held(0, 0, None)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(parsed)
    try:
        with engine.connect() as conn:
            found = inspect(conn)
            tables = set(found.get_table_names())
            alerts = _count(conn, "alerts") if "alerts" in tables else 0
            assets = _count(conn, "assets") if "assets" in tables else 0
            now = None
            if "assets" in tables:
                # Read before Store migrates it: the column has had more than one name.
                columns = {c["name"] for c in found.get_columns("assets")}
                name = next((n for n in ASSET_LAST_SEEN if n in columns), None)
                if name is not None:
                    now = conn.execute(select(func.max(column(name))).select_from(
                        table("assets"))).scalar_one_or_none()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StateDirError(f"cannot open the database {mask_url(url)}{source}: {reason}"
                            ) from None
    finally:
        engine.dispose()
    return Held(alerts, assets, None if now is None else int(now))


def _count(conn: Connection, name: str) -> int:
    return int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())


def live_run(state_dir: Path) -> str | None:
    """A description of the ``ownercare run`` using ``state_dir`` right now, or None."""
    with contextlib.suppress(OSError), (state_dir / LOCK_NAME).open() as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _run_json_text(state_dir) or "another `ownercare run` is starting on it"
    text = _run_json_text(state_dir)
    return text if text is not None and _run_json_pid_alive(state_dir) else None


def _run_json(state_dir: Path) -> dict[str, object]:
    try:
        info = json.loads((state_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _run_json_text(state_dir: Path) -> str | None:
    info = _run_json(state_dir)
    pid = info.get("pid")
    if not isinstance(pid, int):
        return None
    api = f", API {info['api_url']}" if isinstance(info.get("api_url"), str) else ""
    return f"pid {pid}{api}"


def _run_json_pid_alive(state_dir: Path) -> bool:
    pid = _run_json(state_dir).get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"ownercare" in cmdline  # a pid reused by another program is no run of ours


def refuse_if_in_use(state_dir: Path) -> None:
    """StateDirError naming the running ``ownercare run`` on ``state_dir`` and how to stop it."""
    busy = live_run(state_dir) if state_dir.is_dir() else None
    if busy is not None:
        raise StateDirError(
            f"{state_dir} is in use by a running `ownercare run` ({busy}); stop that one "
            f"first (Ctrl-C in its terminal, or `{stop_command(state_dir)}`), or give this one "
            "another --state-dir and other ports")


def claim(state_dir: Path, database_url: str, *, own_database: bool, resume: bool,
          now: datetime) -> Claim:
    """Make ``state_dir`` this run's: refuse one in use, move an earlier run's aside (or, with
    ``resume``, keep it), and hold its lock. ``own_database``: the database is the SQLite file
    in ``state_dir`` (not OWNERCARE_DATABASE_URL). ``now`` names the moved-aside directory.
    """
    state_dir = state_dir.resolve()
    if state_dir.exists() and not state_dir.is_dir():
        raise StateDirError(f"--state-dir {state_dir} exists and is not a directory")
    refuse_if_in_use(state_dir)
    entries = sorted(p.name for p in state_dir.iterdir()) if state_dir.is_dir() else []
    earlier = [name for name in entries if name != LOCK_NAME]
    source = "" if own_database else " (OWNERCARE_DATABASE_URL)"
    if resume:
        held = database_holds(database_url, source)
        if earlier or not held.empty:
            # Faust's table metadata: its tables are in memory and recover from their
            # changelogs (when the embedded Kafka kept them), never from this.
            shutil.rmtree(state_dir / "faust", ignore_errors=True)
            return _locked(state_dir, Claim(
                f"resuming on {state_dir} ({held.describe()}): the database carries on "
                "(alerts, cases, API keys)", held))
        return _locked(state_dir, Claim(f"nothing to resume in {state_dir}: this run starts "
                                        "fresh", held))
    if not own_database:
        held = database_holds(database_url, source)
        if not held.empty:
            raise StateDirError(
                f"the database {mask_url(database_url)} already holds {held.describe()}; "
                "`ownercare run` starts fresh only on its own SQLite file in the state dir: "
                "add --resume to continue on it, or point OWNERCARE_DATABASE_URL at an empty "
                "database")
    if not earlier:
        return _locked(state_dir, Claim(None, None))
    foreign = [name for name in earlier if name not in OWN_ENTRIES]
    if foreign:
        raise StateDirError(
            f"{state_dir} holds files `ownercare run` did not write "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); give "
            "--state-dir a new or empty directory, or add --resume to use it as it is")
    if Path.cwd().resolve().is_relative_to(state_dir):
        raise StateDirError(f"{state_dir} holds an earlier run and is the current directory "
                            "(or holds it), so it cannot be moved aside; run from elsewhere, "
                            "or add --resume to continue on it")
    what = ""
    if own_database:
        try:
            what = f" ({database_holds(database_url).describe()})"
        except StateDirError:
            what = " (a database that does not open)"
    aside = _aside_path(state_dir, now)
    state_dir.rename(aside)
    return _locked(state_dir, Claim(
        f"{state_dir} held an earlier run{what}: moved it to {aside.name}; this run starts "
        "fresh (--resume continues on a state dir instead)", None))


def _locked(state_dir: Path, claimed: Claim) -> Claim:
    """``claimed`` with the lock of ``state_dir`` (created if need be) held."""
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = (state_dir / LOCK_NAME).open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise StateDirError(f"{state_dir}: another `ownercare run` started on it just now; "
                            "give this one another --state-dir and other ports") from None
    claimed.lock = lock
    return claimed


def stop_command(state_dir: Path) -> str:
    info = _run_json(state_dir)
    pid = info.get("pid")
    return f"kill -INT {pid}" if isinstance(pid, int) else "kill -INT <its pid>"


def _aside_path(state_dir: Path, now: datetime) -> Path:
    stamp = now.strftime("%Y%m%d-%H%M%S")
    aside = state_dir.with_name(f"{state_dir.name}.old-{stamp}")
    number = 1
    while aside.exists():
        number += 1
        aside = state_dir.with_name(f"{state_dir.name}.old-{stamp}-{number}")
    return aside
