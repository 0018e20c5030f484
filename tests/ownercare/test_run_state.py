"""``ownercare run`` on a state dir an earlier run left: run for real, three times over.

The first run is refused a second run on its state dir while it runs; the next plain run moves
its state aside and starts over in event time; ``--resume`` continues on the database (keys
and assets carry on) with the fleet after the database's latest event; a ``--start`` before
that is refused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ownercare import embedded
from ownercare.statedir import Held, database_holds, resume_start
from vocab.eventtime import DAY_MS, HOUR_MS

pytestmark = pytest.mark.integration

T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z, the simulator's default start


class Run:
    """One ``ownercare run`` child with its output in a file."""

    def __init__(self, tmp_path: Path, name: str, state: Path, *args: str,
                 ports: tuple[int, int, int] | None = None) -> None:
        self.ports = ports or (embedded.free_port(), embedded.free_port(),
                               embedded.free_port())
        self.out_path = tmp_path / f"{name}.out"
        api, mqtt, kafka = self.ports
        env = {**os.environ, "OWNERCARE_PARTITIONS": "2", "OWNERCARE_LATEST_FLUSH_S": "0.5",
               "OWNERCARE_TREND_FLUSH_S": "0.5",
               "OWNERCARE_WORKER_APP_ID": f"state-{os.getpid()}-{name}"}
        with self.out_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ownercare", "run", "--vehicles", "3", "--chargers",
                 "1", "--speed", "100000", "--state-dir", str(state), "--api-port", str(api),
                 "--mqtt-port", str(mqtt), "--kafka-port", str(kafka), *args],
                stdout=out, stderr=subprocess.STDOUT, env=env)

    @property
    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = 180) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ownercare run exited with {self.proc.returncode} "
                                     f"waiting for {what}:\n{self.output[-3000:]}")
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output[-3000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(90)


def finish(run: Run, url: str, until_ms: int) -> Held:
    """Wait until the fleet has published to ``until_ms`` and the database has it; stop."""
    try:
        run.wait_for(lambda: "simulation_finished" in run.output, "the simulation to end")
        held: Held = run.wait_for(
            lambda: (h := database_holds(url)).fleet_now_ms is not None
            and h.fleet_now_ms >= until_ms and h, "the database to catch up")
    finally:
        code = run.stop()
    assert code == 0, run.output[-3000:]
    assert "ownercare run: stopped; the state stays in" in run.output
    return held


def keys_listed(state: Path) -> list[str]:
    listed = subprocess.run([sys.executable, "-m", "ownercare", "keys", "list"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "OWNERCARE_STATE_DIR": str(state)})
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.splitlines()


def test_a_second_run_starts_fresh_and_resume_continues_the_first(tmp_path: Path) -> None:
    state = tmp_path / ".ownercare"
    url = f"sqlite:///{state / 'ownercare.db'}"

    first = Run(tmp_path, "first", state, "--duration", "2d")
    try:
        first.wait_for(lambda: (state / "run.json").exists(), "run.json")
        # The same state dir, the same ports: the running run is named before any port clash.
        second = subprocess.run(
            [sys.executable, "-m", "ownercare", "run", "--state-dir", str(state),
             "--api-port", str(first.ports[0]), "--mqtt-port", str(first.ports[1]),
             "--kafka-port", str(first.ports[2])],
            capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stderr
        assert f"is in use by a running `ownercare run` (pid {first.proc.pid}" in second.stderr
        assert f"kill -INT {first.proc.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert (state / "run.json").exists()  # the refused run left the running one alone
        held_first = finish(first, url, T0 + 2 * DAY_MS - 2 * HOUR_MS)
    finally:
        first.stop()
    assert held_first.assets == 4

    fresh = Run(tmp_path, "fresh", state, "--duration", "1d")
    held_fresh = finish(fresh, url, T0 + DAY_MS - 2 * HOUR_MS)
    (aside,) = tmp_path.glob(".ownercare.old-*")
    notice = fresh.output.splitlines()[0]
    assert notice == (f"ownercare run: {state} held an earlier run ({held_first.describe()}): "
                      f"moved it to {aside.name}; this run starts fresh (--resume continues on "
                      "a state dir instead)")
    assert database_holds(f"sqlite:///{aside / 'ownercare.db'}") == held_first
    # Started over: its event time is a day in, not the first run's two.
    assert held_fresh.fleet_now_ms is not None
    assert held_fresh.fleet_now_ms < T0 + DAY_MS
    assert len(keys_listed(state)) == 1  # its own session key only (revoked at stop)

    resumed = Run(tmp_path, "resumed", state, "--duration", "1d", "--resume")
    start = resume_start(held_fresh)
    assert start == "2026-01-06T00:00:00Z"
    held_resumed = finish(resumed, url, T0 + 2 * DAY_MS - 2 * HOUR_MS)
    assert resumed.output.splitlines()[0].startswith(
        f"ownercare run: resuming on {state} ({held_fresh.describe()}): the database carries "
        "on (alerts, cases, API keys)")
    assert f"start={start}" in (state / "logs" / "simulator.log").read_text()
    assert held_resumed.assets == 4
    assert len(keys_listed(state)) == 2  # the database carried on: both runs' session keys
    assert len(list(tmp_path.glob(".ownercare.old-*"))) == 1

    backwards = subprocess.run(
        [sys.executable, "-m", "ownercare", "run", "--resume", "--state-dir", str(state),
         "--start", "2026-01-05T00:00:00Z", "--api-port", str(embedded.free_port()),
         "--mqtt-port", str(embedded.free_port()), "--kafka-port", str(embedded.free_port())],
        capture_output=True, text=True, timeout=60)
    assert backwards.returncode == 2, backwards.stderr
    assert backwards.stderr.strip().splitlines()[-1].startswith(
        "ownercare run: --start 2026-01-05T00:00:00Z is not after the database's latest event "
        "time (2026-01-06 23:")
    assert "Traceback" not in backwards.stderr
    assert backwards.stdout == ""


def test_foreign_files_in_the_state_dir_are_refused_before_anything_starts(
        tmp_path: Path) -> None:
    state = tmp_path
    (state / "notes.txt").write_text("mine")
    result = subprocess.run(
        [sys.executable, "-m", "ownercare", "run", "--state-dir", str(state), "--api-port",
         str(embedded.free_port()), "--mqtt-port", str(embedded.free_port()),
         "--kafka-port", str(embedded.free_port())],
        capture_output=True, text=True, timeout=60, cwd=tmp_path.parent)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"ownercare run: {state} holds files `ownercare run` did not write (notes.txt); give "
        "--state-dir a new or empty directory, or add --resume to use it as it is")
    assert sorted(p.name for p in state.iterdir()) == ["notes.txt"]
