"""Silence through the real stack, started as a user starts it: ``ownercare run``.

A small simulated fleet in which two cars' telematics units and one charger stop sending
(faults ``silent`` and ``charger_silent``). The worker has no message from them to act on:
it must notice from the event time of the rest of their partition (the sweeps) and raise
exactly one ``vehicle_silent`` alert per silent car and one ``charger_silent`` alert for the
charger, each within hours of the onset in event time, and none for anyone else.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from diagnostics.silence import SWEEP_INTERVAL_MS
from ingest.kafka import partition_for
from ownercare import embedded
from simulators.fleet import Fleet
from tests.end_to_end.test_end_to_end import all_alerts, wait_for
from vocab.eventtime import HOUR_MS

pytestmark = pytest.mark.integration

VEHICLES, CHARGERS, SEED, PARTITIONS = 16, 6, 5, 2
FAULTS = {"silent": 2, "charger_silent": 1}


def test_silent_cars_and_chargers_are_found_by_the_fleet_clock(tmp_path: Path) -> None:
    fleet = Fleet(VEHICLES, CHARGERS, seed=SEED, faults=FAULTS)
    truth = fleet.truth()
    silent_cars = {t["vin"]: t for t in truth if t["fault"] == "silent"}
    (silent_charger,) = [t for t in truth if t["fault"] == "charger_silent"]
    # The premise: the silent charger shares its partition with other chargers (their
    # heartbeats are its clock).
    part = partition_for(silent_charger["charger_id"], PARTITIONS)
    assert sum(partition_for(c, PARTITIONS) == part for c in fleet.chargers) >= 2

    state = tmp_path / "state"
    api_port = embedded.free_port()
    cmd = [
        sys.executable, "-m", "ownercare", "run",
        "--vehicles", str(VEHICLES), "--chargers", str(CHARGERS), "--seed", str(SEED),
        "--faults", ",".join(f"{k}:{v}" for k, v in FAULTS.items()),
        "--speed", "100000", "--duration", "6d",
        "--drive-interval", "300", "--parked-interval", "1800",
        "--state-dir", str(state), "--api-port", str(api_port),
        "--mqtt-port", str(embedded.free_port()), "--kafka-port", str(embedded.free_port()),
    ]
    # At 100 000x one fetched batch spans hours of this fleet's event time; the sweeps come
    # between its records (``diagnostics.silence``), so the batch size does not move the
    # alert's time: the default stack (Kafka on disk, its 500 ms fetch wait) is what runs.
    env = {**os.environ, "OWNERCARE_PARTITIONS": str(PARTITIONS),
           "OWNERCARE_WORKER_APP_ID": f"silence-{os.getpid()}"}
    out = open(tmp_path / "run.out", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    api = f"http://127.0.0.1:{api_port}"
    try:
        wait_for(lambda: (state / "run.json").exists(), 120, "run.json", proc)
        info = json.loads((state / "run.json").read_text())
        auth = {"Authorization": f"Bearer {info['api_key']}"}
        wait_for(lambda: "simulation_finished" in (tmp_path / "run.out").read_text(),
                 600, "the simulation to finish", proc)

        def settled() -> list[dict[str, Any]] | None:
            alerts = (all_alerts(api, auth, type="vehicle_silent")
                      + all_alerts(api, auth, type="charger_silent"))
            key = sorted((a["id"], a["last_seen_event_ms"]) for a in alerts)
            settled.history.append(key)  # type: ignore[attr-defined]
            stable = len(settled.history) >= 8 and all(  # type: ignore[attr-defined]
                h == key for h in settled.history[-8:])  # type: ignore[attr-defined]
            return alerts if stable and len(alerts) >= 3 else None

        settled.history = []  # type: ignore[attr-defined]
        alerts = wait_for(settled, 300, "the silence alerts", proc)
        by_asset: dict[str, list[dict[str, Any]]] = {}
        for alert in alerts:
            by_asset.setdefault(alert["asset_id"], []).append(alert)
        expected = {**silent_cars, silent_charger["charger_id"]: silent_charger}
        assert set(by_asset) == set(expected), sorted(by_asset)
        for asset, fault in expected.items():
            assert len(by_asset[asset]) == 1, by_asset[asset]
            (alert,) = by_asset[asset]
            assert alert["type"] == ("charger_silent" if fault["fault"] == "charger_silent"
                                     else "vehicle_silent")
            assert alert["status"] == "open"
            assert alert["recommended_action"]
            delay = alert["first_seen_event_ms"] - fault["onset_ts"]
            assert 0 < delay <= 6 * HOUR_MS, (asset, delay / HOUR_MS)
            # Seen at the first sweep boundary past the threshold (evidence rounded to 36 s).
            past = (alert["first_seen_event_ms"] - alert["evidence"]["last_report_ts"]
                    - alert["evidence"]["threshold_hours"] * HOUR_MS)
            assert -18_000 < past <= SWEEP_INTERVAL_MS + 18_000, (asset, past / 60_000)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(90)
        out.close()
    assert code == 0, (tmp_path / "run.out").read_text()[-3000:]
