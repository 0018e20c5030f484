"""Every injectable fault through the real stack, started as a user starts it: ``ownercare run``.

One simulated fleet carries one of each fault the simulator can inject (vehicle and charger
faults, foreseeable ones and silences). The oracle is the offline evaluation of the very same
fleet (``ownercare eval``'s code: the same pipelines without brokers): on every faulty asset the
worker must raise the alert that found its fault offline, in time (before the failure, or after
the onset for silences), and nothing on any healthy car or charger. What differs between the
two runs is everything a deployment adds: MQTT, the bridge, Kafka partitions, Faust agents and
tables, the fleet-wide attribution topic, the alert sink and the API.
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

from ingest.kafka import partition_for
from ownercare import embedded
from ownercare.evaluation.run import run_scenario
from ownercare.evaluation.scenario import Scenario
from ownercare.evaluation.scoring import score_run
from simulators.faults import FAULTS
from tests.end_to_end.test_end_to_end import all_alerts, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

# A fleet whose every fault the offline evaluation finds in time (the premise below). Since
# drivers retry after a failed session (simulators/booking.py), seeds 2 and 3 no longer qualify:
# their inlet-fault car charges once between the onset and its failure.
VEHICLES, CHARGERS, SEED, DAYS, PARTITIONS = 24, 8, 4, 30, 2
DRIVE_S, PARKED_S = 300, 1800
EVERY_FAULT = {name: 1 for name in FAULTS}


def test_the_worker_finds_every_fault_type_the_offline_evaluation_finds(tmp_path: Path) -> None:
    offline = score_run(run_scenario(
        Scenario(SEED, VEHICLES, CHARGERS, DAYS, EVERY_FAULT, DRIVE_S, PARKED_S), processes=1))
    # The premise: offline, this fleet's every fault is found and no healthy asset alerted.
    assert {n: (f["detected"], f["faulty"]) for n, f in offline["faults"].items()} == {
        n: (1, 1) for n in FAULTS}
    assert offline["false_alerts_on_healthy_vehicles"] == 0
    assert offline["false_alerts_on_healthy_chargers"] == 0
    detections = {(d["asset_id"], d["alert_type"]): d for d in offline["detections"]}
    faulty_assets = {asset for asset, _type in detections}
    # A silent asset's clock is the rest of its partition (``diagnostics/silence.py``): the
    # offline run is one partition, so each silent asset must share its partition here too.
    fleet = Scenario(SEED, VEHICLES, CHARGERS, DAYS, EVERY_FAULT, DRIVE_S, PARKED_S).fleet()
    assets = [v.vin for v in fleet.vehicles] + fleet.chargers
    for d in offline["detections"]:
        if FAULTS[d["fault"]].scored_by == "delay":
            part = partition_for(d["asset_id"], PARTITIONS)
            assert sum(partition_for(a, PARTITIONS) == part for a in assets
                       if a.startswith("CP-") == d["asset_id"].startswith("CP-")) >= 2

    state = tmp_path / "state"
    api_port = embedded.free_port()
    cmd = [
        sys.executable, "-m", "ownercare", "run",
        "--vehicles", str(VEHICLES), "--chargers", str(CHARGERS), "--seed", str(SEED),
        "--faults", ",".join(f"{k}:{v}" for k, v in EVERY_FAULT.items()),
        "--speed", "200000", "--duration", f"{DAYS}d",
        "--drive-interval", str(DRIVE_S), "--parked-interval", str(PARKED_S),
        "--state-dir", str(state), "--api-port", str(api_port),
        "--mqtt-port", str(embedded.free_port()), "--kafka-port", str(embedded.free_port()),
    ]
    env = {**os.environ, "OWNERCARE_PARTITIONS": str(PARTITIONS),
           "OWNERCARE_WORKER_APP_ID": f"every-fault-{os.getpid()}"}
    out = open(tmp_path / "run.out", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    api = f"http://127.0.0.1:{api_port}"
    try:
        wait_for(lambda: (state / "run.json").exists(), 120, "run.json", proc)
        key = json.loads((state / "run.json").read_text())["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        wait_for(lambda: "simulation_finished" in (tmp_path / "run.out").read_text(),
                 900, "the simulation to finish", proc)
        history: list[list[tuple[str, int]]] = []
        missing: list[set[tuple[str, str]]] = []

        def settled() -> list[dict[str, Any]] | None:
            alerts = all_alerts(api, auth)
            history.append(sorted((a["id"], a["last_seen_event_ms"]) for a in alerts))
            missing.append(set(detections) - {(a["asset_id"], a["type"]) for a in alerts})
            stable = len(history) >= 8 and all(h == history[-1] for h in history[-8:])
            return alerts if stable and not missing[-1] else None

        try:
            alerts = wait_for(settled, 600, "an alert for every fault", proc)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; still missing: {sorted(missing[-1])}") from None
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(90)
        out.close()
    assert code == 0, (tmp_path / "run.out").read_text()[-3000:]

    on_healthy = [(a["asset_id"], a["type"]) for a in alerts if a["asset_id"] not in faulty_assets]
    assert on_healthy == []
    for (asset, alert_type), detection in detections.items():
        first_seen = min(a["first_seen_event_ms"] for a in alerts
                         if a["asset_id"] == asset and a["type"] == alert_type)
        if FAULTS[detection["fault"]].scored_by == "delay":
            assert first_seen >= detection["onset_ts"], (asset, alert_type)
        else:
            assert first_seen < detection["failure_ts"], (asset, alert_type)
        kind = "charger" if FAULTS[detection["fault"]].asset == "charger" else "vehicle"
        assert any(a["asset_kind"] == kind for a in alerts if a["asset_id"] == asset)
