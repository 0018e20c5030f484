"""Per-signal validation in the bridge, against real brokers (Mosquitto, Tansu).

A message keeps its valid signals; each bad one is dead-lettered on its own with its path and
reason; the metric labels stay bounded whatever paths a device invents; private signals come
from the overlays the configuration names.
"""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from config.settings import BridgeSettings
from ingest import contract, service_metrics, topics
from ingest.bridge import MAX_SIGNAL_LETTERS, Bridge, signal_letters
from ingest.contract import Reason, SignalRejection
from tests.bridgekit import TS, bridge_env, start_bridge
from tests.stackkit import Publisher, random_vin, read_topic, records_in

pytestmark = pytest.mark.integration

OVERLAY = """
Vehicle.Acme.HeatPump.Cop:
  type: sensor
  datatype: float
  min: 0
  max: 10
  description: Coefficient of performance of the heat pump.
"""


def test_a_message_keeps_its_valid_signals_and_each_bad_one_is_dead_lettered(
        mosquitto_url: str, kafka_url: str, tmp_path: Path) -> None:
    overlay = tmp_path / "acme.vspec"
    overlay.write_text(OVERLAY)
    log = tmp_path / "bridge.log"
    proc = start_bridge(bridge_env(mosquitto_url, kafka_url,
                                   OWNERCARE_VSS_OVERLAYS=str(overlay)), log)
    try:
        assert "bridge_catalogue vss=v6.0" in log.read_text()
        vin, only_bad = random_vin(), random_vin()
        pub = Publisher(mosquitto_url)
        pub.publish(f"vehicles/{vin}/telemetry", orjson.dumps({"ts": TS, "seq": 1, "signals": {
            "Vehicle.Speed": 42.0,
            "Vehicle.Acme.HeatPump.Cop": 3.5,  # private, from the overlay
            "Vehicle.Cabin.HVAC.AmbientAirTemperature": 21.0,  # standard VSS
            "Vehicle.Warp.Drive": 9.0,
            "Vehicle.TraveledDistance": 12.5,  # uint32 in VSS
        }}))
        pub.publish(f"vehicles/{only_bad}/telemetry", orjson.dumps(
            {"ts": TS, "seq": 1, "signals": {"Vehicle.Speed": 9000.0}}))
        pub.publish(f"vehicles/{only_bad}/telemetry", orjson.dumps(
            {"ts": TS, "seq": 2, "signals": {"Vehicle.Speed": 3.0}}))
        pub.close()

        rows = read_topic(kafka_url, topics.VEHICLES,
                          lambda rows: len(records_in(rows, {vin, only_bad})) >= 2)
        got = {(r["id"], r["seq"]): r for r in records_in(rows, {vin, only_bad})}
        assert got[(vin, 1)]["data"]["signals"] == {
            "Vehicle.Speed": 42.0, "Vehicle.Acme.HeatPump.Cop": 3.5,
            "Vehicle.Cabin.HVAC.AmbientAirTemperature": 21.0}
        # A message none of whose signals is valid forwards nothing; the next one does.
        assert (only_bad, 1) not in got
        assert got[(only_bad, 2)]["data"]["signals"] == {"Vehicle.Speed": 3.0}

        def letters(rows: list[tuple[bytes | None, bytes]]) -> list[dict[str, object]]:
            docs = [orjson.loads(v) for _, v in rows]
            return [d for d in docs if d.get("id") in (vin, only_bad)]

        dl = read_topic(kafka_url, topics.DEAD_LETTER, lambda rows: len(letters(rows)) >= 3)
        found = {(d["id"], d["path"]): d for d in letters(dl)}
        assert len(found) == 3
        warp = found[(vin, "Vehicle.Warp.Drive")]
        assert (warp["reason"], warp["value"], warp["seq"], warp["ts"]) == (
            "unknown_signal", 9.0, 1, TS)
        assert "VSS v6.0 or the configured overlays" in str(warp["detail"])
        assert found[(vin, "Vehicle.TraveledDistance")]["reason"] == "wrong_type"
        assert found[(only_bad, "Vehicle.Speed")]["reason"] == "out_of_range"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    stats = [line for line in log.read_text().splitlines() if "bridge_stats" in line][-1]
    assert "'unknown_signal:Vehicle.Warp.Drive': 1" in stats, stats
    assert "'out_of_range:Vehicle.Speed': 1" in stats, stats


def test_a_bad_overlay_stops_the_bridge_with_one_precise_line(tmp_path: Path) -> None:
    overlay = tmp_path / "acme.vspec"
    overlay.write_text("Vehicle.Acme.X:\n  type: sensor\n  datatype: quaternion\n")
    for value, message in ((str(overlay), f"overlay {overlay}: node 'Vehicle.Acme.X': "
                            "datatype 'quaternion' is not a VSS primitive type"),
                           (str(tmp_path / "absent.vspec"), "is not a file")):
        done = subprocess.run([sys.executable, "-m", "ownercare", "bridge"], check=False,
                              capture_output=True, text=True, timeout=60,
                              env={**bridge_env("mqtt://127.0.0.1:1", "kafka://127.0.0.1:1"),
                                   "OWNERCARE_VSS_OVERLAYS": value, "PATH": ""})
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
        assert "Traceback" not in done.stderr


def test_signal_letters_are_bounded_per_message() -> None:
    record = {"id": "WVWZZZ1JZXW000001", "ts": TS, "seq": 3}
    rejected = [SignalRejection(f"Vehicle.Bogus.S{i}", Reason.UNKNOWN_SIGNAL, "unknown", 1.0)
                for i in range(MAX_SIGNAL_LETTERS + 30)]
    rejected[0] = SignalRejection("Vehicle.Big", Reason.WRONG_TYPE, "wrong", ["x" * 40] * 40)
    payload = b"{...}" * 300  # above MAX_LETTER_PAYLOAD_BYTES: not in every letter
    letters = [orjson.loads(x) for x in signal_letters("vehicles/x/telemetry", record, rejected,
                                                       payload, 1, 5)]
    assert len(letters) == MAX_SIGNAL_LETTERS + 1
    assert letters[0]["value_omitted"] is True
    assert "value" not in letters[0]
    assert letters[1]["value"] == 1.0
    assert all("payload_b64" not in d for d in letters[:-1])
    assert letters[-1]["reason"] == "signals_omitted"
    assert letters[-1]["detail"] == "30 more bad signals (unknown_signal: 30)"
    assert base64.b64decode(letters[-1]["payload_b64"]) == payload
    small = orjson.loads(signal_letters("vehicles/x/telemetry", record, rejected[1:2], b"{}",
                                        1, 5)[0])
    assert base64.b64decode(small["payload_b64"]) == b"{}"


def test_path_labels_stay_bounded_when_a_device_invents_paths() -> None:
    bridge = Bridge(BridgeSettings())
    standard = [bridge._path_label(p) for p in list(contract.SIGNALS)[:300]]
    assert standard == list(contract.SIGNALS)[:300]  # catalogue paths are finite: all kept
    invented = {bridge._path_label(f"Vehicle.Invented.P{i}") for i in range(10_000)}
    assert len(invented) == service_metrics.UNKNOWN_PATH_LABELS + 1
    assert service_metrics.OTHER_PATH in invented
    assert bridge._path_label("not a path\n{}") == service_metrics.OTHER_PATH
    assert bridge._path_label("Vehicle.Invented.P3") == "Vehicle.Invented.P3"  # still its own
