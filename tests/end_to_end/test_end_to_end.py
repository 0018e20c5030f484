"""The whole loop on the embedded stack, started exactly as a user starts it: ``ownercare run``.

amqtt + Tansu + bridge + Faust worker + API + a simulated fleet of 50 vehicles, 5 of them with a
weakening 12 V battery. Every faulty vehicle must get exactly one 12 V alert at the API, raised
(in event time) before its simulated failure; no healthy vehicle may get one. Then SIGTERM must
stop every process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ownercare import embedded
from simulators.fleet import Fleet
from tests.stackkit import Publisher

pytestmark = pytest.mark.integration

VEHICLES = 50
FAULTY = 5
SIM_DAYS = 30


def wait_for(predicate: Any, timeout: float, what: str, proc: subprocess.Popen[bytes]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = Path(proc.args[proc.args.index("--state-dir") + 1]).parent / "run.out"
            raise AssertionError(f"ownercare run exited with {proc.returncode} while waiting "
                                 f"for {what}:\n{out.read_text()[-4000:]}")
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def all_alerts(api: str, headers: dict[str, str], **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": "200", **params, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{api}/alerts", params=query, headers=headers, timeout=10).json()
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_weak_12v_batteries_are_flagged_before_they_fail(tmp_path: Path) -> None:
    state = tmp_path / "state"
    truth_path = tmp_path / "truth.json"
    api_port = embedded.free_port()
    cmd = [
        sys.executable, "-m", "ownercare", "run",
        "--vehicles", str(VEHICLES), "--chargers", "3", "--seed", "11",
        "--faults", f"weak_12v:{FAULTY}", "--speed", "200000", "--duration", f"{SIM_DAYS}d",
        "--drive-interval", "300", "--parked-interval", "3600",
        "--truth", str(truth_path), "--state-dir", str(state),
        "--api-port", str(api_port), "--mqtt-port", str(embedded.free_port()),
        "--kafka-port", str(embedded.free_port()),
    ]
    env = {**os.environ, "OWNERCARE_PARTITIONS": "4", "OWNERCARE_WORKER_APP_ID":
           f"e2e-{os.getpid()}"}
    out = open(tmp_path / "run.out", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    api = f"http://127.0.0.1:{api_port}"
    try:
        run_json = wait_for(lambda: (state / "run.json").exists(), 120, "run.json", proc)
        assert run_json
        info = json.loads((state / "run.json").read_text())
        assert info["api_url"] == api
        # run.json carries the session's admin key, readable by its owner only.
        assert (state / "run.json").stat().st_mode & 0o777 == 0o600
        auth = {"Authorization": f"Bearer {info['api_key']}"}
        assert httpx.get(f"{api}/alerts", timeout=10).status_code == 401
        assert set(info["services"]) == {"worker", "bridge", "api", "simulator"}

        # The simulator ends after SIM_DAYS of simulated time; the rest keeps running.
        wait_for(lambda: "simulation_finished" in (tmp_path / "run.out").read_text(),
                 600, "the simulation to finish", proc)
        truth = json.loads(truth_path.read_text())
        faulty = {t["vin"]: t for t in truth if t["fault"] == "weak_12v"}
        assert len(faulty) == FAULTY

        def settled() -> list[dict[str, Any]] | None:
            # Settled when every faulty vehicle has its alert and nothing changed for a while.
            alerts = all_alerts(api, auth, type="weak_12v_battery")
            key = sorted((a["id"], a["last_seen_event_ms"]) for a in alerts)
            settled.history.append(key)  # type: ignore[attr-defined]
            stable = len(settled.history) >= 8 and all(  # type: ignore[attr-defined]
                h == key for h in settled.history[-8:])  # type: ignore[attr-defined]
            return alerts if stable and {a["asset_id"] for a in alerts} >= set(faulty) else None

        settled.history = []  # type: ignore[attr-defined]
        alerts = wait_for(settled, 300, "12 V alerts for every faulty vehicle", proc)

        by_vin: dict[str, list[dict[str, Any]]] = {}
        for alert in alerts:
            by_vin.setdefault(alert["asset_id"], []).append(alert)
        false_alarms = set(by_vin) - set(faulty)
        assert not false_alarms, f"healthy vehicles alerted: {sorted(false_alarms)}"
        for vin, fault in faulty.items():
            assert len(by_vin[vin]) == 1, f"{vin} got {len(by_vin[vin])} alerts, not one"
            (alert,) = by_vin[vin]
            assert alert["first_seen_event_ms"] < fault["failure_ts"], (vin, alert, fault)
            detail = httpx.get(f"{api}/alerts/{alert['id']}", headers=auth, timeout=10).json()
            assert detail["evidence"]["slope_v_per_day"] < 0
            assert detail["recommended_action"]

        # The vehicle view shows the latest signals and the open alert.
        vin = next(iter(faulty))
        view = httpx.get(f"{api}/vehicles/{vin}", headers=auth, timeout=10).json()
        paths = {s["path"] for s in view["signals"]}
        assert "Vehicle.LowVoltageBattery.CurrentVoltage" in paths
        assert [a["type"] for a in view["open_alerts"]] == ["weak_12v_battery"]
        # ... and the daily trends the worker aggregated with the latest values: the faulty
        # car parks overnight, so it has resting 12 V readings, and it reports tyre pressures.
        assert view["trends"].get("battery12v_resting_v"), sorted(view["trends"])
        assert view["trends"].get("tire_pressure_row1_left_kpa"), sorted(view["trends"])
        # The chargers' sessions, tracked by the worker from OCPP status and meter values.
        chargers = httpx.get(f"{api}/chargers", headers=auth, timeout=10).json()["items"]
        assert len(chargers) == 3
        sessions = [s for c in chargers for s in httpx.get(
            f"{api}/chargers/{c['charger_id']}", headers=auth, timeout=10).json()[
            "recent_sessions"]]
        assert any(s["end_status"] == "Finishing" and s["energy_wh"] for s in sessions), sessions
        ready = httpx.get(f"{api}/health/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        # /metrics sees the bridge's and the worker's counters and the worker group's lag.
        scraped = httpx.get(f"{api}/metrics", headers=auth, timeout=15).text
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(scraped):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        assert totals["ownercare_bridge_messages_total"] > 0, scraped
        assert totals["ownercare_worker_records_total"] > 0, scraped
        assert "ownercare_consumer_lag_records{" in scraped
        assert totals["ownercare_alerts"] >= FAULTY

        # A trouble code published now by a healthy car is an alert at the API within seconds.
        fleet_vins = [v.vin for v in Fleet(VEHICLES, 3, seed=11, faults={"weak_12v": FAULTY}
                                           ).vehicles]
        healthy = next(v for v in fleet_vins if v not in faulty)
        publisher = Publisher(info["mqtt_url"])
        publisher.publish(f"vehicles/{healthy}/events", json.dumps(
            {"ts": view["last_seen_event_ms"] + 1000, "seq": 10**9, "type": "dtc",
             "code": "P0AA6"}))
        publisher.close()
        dtc = wait_for(lambda: all_alerts(api, auth, type="dtc", vin=healthy), 60,
                       "the DTC alert", proc)
        assert dtc[0]["severity"] == "critical"
        assert dtc[0]["asset_id"] == healthy
    finally:
        pids = []
        if (state / "run.json").exists():
            info = json.loads((state / "run.json").read_text())
            pids = [s["pid"] for s in info["services"].values()] + [info["tansu_pid"]]
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(90)
        out.close()
    assert code == 0, (tmp_path / "run.out").read_text()[-3000:]
    assert pids, "run.json named no services"
    assert not [p for p in pids if alive(p)], "ownercare run left processes behind"
    assert not (state / "run.json").exists()
