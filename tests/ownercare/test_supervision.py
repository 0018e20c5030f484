"""``ownercare run`` restarts what crashes: kill -9 the worker, the bridge and the API of a real
run and each comes back (new pid in run.json, the restart on /health and /metrics, the fleet's
telemetry still reaching the database); Ctrl-C then stops everything; a service killed again
and again stops the stack with one clear line."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ownercare.statedir import database_holds
from tests.end_to_end.test_end_to_end import alive
from tests.ownercare.test_run_state import Run

pytestmark = pytest.mark.integration


def run_json(state: Path) -> dict[str, Any]:
    try:
        info: dict[str, Any] = json.loads((state / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    return info


def health(api: str) -> dict[str, Any] | None:
    try:
        body: dict[str, Any] = httpx.get(f"{api}/health/live", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None
    return body


def fleet_now(url: str) -> int:
    return database_holds(url).fleet_now_ms or 0


def replaced(state: Path, name: str, old: int) -> int | None:
    """The new pid of ``name`` once run.json has one and it runs."""
    pid = run_json(state).get("services", {}).get(name, {}).get("pid")
    return pid if pid and pid != old and alive(pid) else None


def pids(info: dict[str, Any]) -> list[int]:
    return [*(s["pid"] for s in info["services"].values()), info["tansu_pid"]]


def test_killed_services_come_back_and_ctrl_c_still_stops_everything(tmp_path: Path) -> None:
    state = tmp_path / "state"
    url = f"sqlite:///{state / 'ownercare.db'}"
    run = Run(tmp_path, "supervised", state, "--speed", "3600")
    try:
        info = run.wait_for(lambda: run_json(state), "run.json")
        api = info["api_url"]
        auth = {"Authorization": f"Bearer {info['api_key']}"}
        every_pid = set(pids(info))
        before = run.wait_for(lambda: fleet_now(url), "telemetry in the database")
        for name in ("worker", "bridge", "api"):
            old = run_json(state)["services"][name]["pid"]
            os.kill(old, signal.SIGKILL)
            new = run.wait_for(lambda n=name, o=old: replaced(state, n, o),
                               f"{name} restarted")
            every_pid.add(new)
            assert not alive(old)
            seen = run.wait_for(
                lambda n=name, p=new: (h := health(api)) and h["services"][n]["pid"] == p and h,
                f"/health to report the new {name}")
            assert seen["services"][name]["restarts"] == 1
            assert seen["services"][name]["last_exit_status"] == -9
            assert seen["services"][name]["last_restart_wall_ms"] > 0
            # The whole path works again: the fleet's telemetry reaches the database.
            before = run.wait_for(lambda b=before: (n := fleet_now(url)) > b and n,
                                  f"telemetry after the {name} restart", timeout=240)
            assert f"service_restarted name={name} status=-9 restarts=1 backoff_s=0.5" \
                in run.output
        final = health(api)
        assert final is not None
        assert {n: s["restarts"] for n, s in final["services"].items()} == {
            "worker": 1, "bridge": 1, "api": 1, "simulator": 0}
        metrics = httpx.get(f"{api}/metrics", headers=auth, timeout=30)
        assert metrics.status_code == 200
        for name, n in (("worker", 1), ("bridge", 1), ("api", 1), ("simulator", 0)):
            assert f'ownercare_service_restarts_total{{service="{name}"}} {n}.0' \
                in metrics.text
        alerts = httpx.get(f"{api}/alerts", headers=auth, timeout=10)
        assert alerts.status_code == 200
        every_pid |= set(pids(run_json(state)))
    finally:
        code = run.stop()
    assert code == 0, run.output[-3000:]
    assert not [p for p in every_pid if alive(p)]
    assert not (state / "run.json").exists()
    assert not (state / "supervisor.json").exists()


def test_a_service_that_keeps_crashing_stops_the_stack_with_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    run = Run(tmp_path, "crashing", state, "--speed", "3600")
    try:
        info = run.wait_for(lambda: run_json(state), "run.json")
        every_pid = set(pids(info))
        killed: set[int] = set()
        deadline = time.monotonic() + 120
        while run.proc.poll() is None and time.monotonic() < deadline:
            pid = run_json(state).get("services", {}).get("bridge", {}).get("pid")
            if pid and pid not in killed and alive(pid):
                every_pid.add(pid)
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            time.sleep(0.05)
    finally:
        code = run.stop()
    assert code == 1, run.output[-3000:]
    assert len(killed) == 5
    reason = [line for line in run.output.splitlines() if line.startswith("ownercare run: ")]
    assert reason[0].startswith(
        "ownercare run: bridge crashed 5 times within 60 s (last exit status -9); stopped "
        "everything (see ")
    assert "Traceback" not in run.output
    assert not [p for p in every_pid if alive(p)]
