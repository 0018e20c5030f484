"""``ownercare run --ocpp``: the simulated chargers connect as OCPP 1.6J charge points to the
run's own gateway, and the worker raises the charger alerts of their injected faults, the
ones the offline evaluation of the same fleet over MQTT raises."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from diagnostics.offline import OfflineDiagnostics
from ingest import contract
from ownercare import embedded
from simulators.fleet import Fleet
from tests.end_to_end.test_end_to_end import all_alerts, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

VEHICLES, CHARGERS, SEED, DAYS = 12, 3, 1, 20
FAULTS = "charger_fault:1,charger_derating:1"
DRIVE_S, PARKED_S = 300, 1800


def offline_charger_alerts() -> set[tuple[str, str, int]]:
    """The same fleet's chargers over MQTT, through the worker's pipelines without brokers."""
    fleet = Fleet(VEHICLES, CHARGERS, seed=SEED,
                  faults={"charger_fault": 1, "charger_derating": 1},
                  drive_interval_s=DRIVE_S, parked_interval_s=PARKED_S)
    end_ms = fleet.start_ms + DAYS * 86_400_000
    records = [contract.validate(topic, payload) for _, topic, payload
               in fleet.messages(end_ms) if topic.startswith("chargers/")]
    offline = OfflineDiagnostics()
    alerts = offline.process(records) + offline.finish(end_ms)
    return {(a["asset_id"], a["type"], a["first_seen"]) for a in alerts
            if a["asset_kind"] == "charger"}


def test_ocpp_chargers_through_the_whole_stack_raise_their_fault_alerts(tmp_path: Path
                                                                         ) -> None:
    expected = offline_charger_alerts()
    assert {(cid, kind) for cid, kind, _ in expected} == {
        ("CP-0001", "charger_derating"), ("CP-0003", "charger_fault")}  # the premise

    state = tmp_path / "state"
    api_port, ocpp_port = embedded.free_port(), embedded.free_port()
    cmd = [
        sys.executable, "-m", "ownercare", "run", "--ocpp",
        "--vehicles", str(VEHICLES), "--chargers", str(CHARGERS), "--seed", str(SEED),
        "--faults", FAULTS, "--speed", "100000", "--duration", f"{DAYS}d",
        "--drive-interval", str(DRIVE_S), "--parked-interval", str(PARKED_S),
        "--state-dir", str(state), "--api-port", str(api_port),
        "--mqtt-port", str(embedded.free_port()), "--kafka-port", str(embedded.free_port()),
    ]
    # Kafka in memory: the test is about the charge points' path, not the broker's disk.
    env = {**os.environ, "OWNERCARE_OCPP_PORT": str(ocpp_port), "OWNERCARE_PARTITIONS": "2",
           "OWNERCARE_EMBEDDED_KAFKA_STORAGE": "memory",
           "OWNERCARE_WORKER_APP_ID": f"ocpp-e2e-{os.getpid()}"}
    out = open(tmp_path / "run.out", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    api = f"http://127.0.0.1:{api_port}"
    try:
        wait_for(lambda: (state / "run.json").exists(), 180, "run.json", proc)
        key = json.loads((state / "run.json").read_text())["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        wait_for(lambda: "simulation_finished" in (tmp_path / "run.out").read_text(),
                 900, "the simulation to finish", proc)
        sim_log = (state / "logs" / "simulator.log").read_text()
        assert "ocpp_chargers_connected" in sim_log
        assert "ocpp_sim_call_refused" not in sim_log
        history: list[list[tuple[str, int]]] = []

        def settled() -> list[dict[str, Any]] | None:
            alerts = [a for a in all_alerts(api, auth) if a["asset_kind"] == "charger"]
            history.append(sorted((a["id"], a["last_seen_event_ms"]) for a in alerts))
            found = {(a["asset_id"], a["type"]) for a in alerts}
            stable = len(history) >= 8 and all(h == history[-1] for h in history[-8:])
            return alerts if stable and found >= {(c, k) for c, k, _ in expected} else None

        alerts = wait_for(settled, 600, "the charger alerts", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(90)
        out.close()
    assert code == 0, (tmp_path / "run.out").read_text()[-3000:]
    gateway_log = (state / "logs" / "ocpp.log").read_text()
    assert "ocpp_call_refused" not in gateway_log
    got = {(a["asset_id"], a["type"], a["first_seen_event_ms"]) for a in alerts}
    assert got == expected
