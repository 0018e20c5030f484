"""Recordings converted, then through ``ownercare replay`` and the detector census.

The carOBD excerpt is real data (a healthy Toyota Etios); the LeafSpy logs are written here in
the app's format, because the real ones carry no licence to ship.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.contract import SIGNALS
from ownercare.cli import main as ownercare
from ownercare.realdata.census import census
from ownercare.realdata.cli import main as realdata
from tests.ownercare.realdata.leafspy_logs import VIN, drives, write

FIXTURES = Path(__file__).parents[2] / "fixtures" / "realdata" / "carobd"
ETIOS = "MBJB29BT000000001"
T = 1_546_300_800 + 8 * 3600  # 2019-01-01T08:00:00Z


def replay(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[list[dict[str, object]],
                                                                   str]:
    capsys.readouterr()
    assert ownercare(["replay", str(path)]) == 0
    out, err = capsys.readouterr()
    return [json.loads(line) for line in out.splitlines()], err.strip().splitlines()[-1]


def test_the_real_obd_excerpt_replays_without_alerts_and_the_detectors_say_why_they_cannot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "etios.jsonl"
    summary = tmp_path / "summary.json"
    assert ownercare(["realdata", "convert", "carobd", str(FIXTURES), "-o", str(out), "--vin",
                      ETIOS, "--start", "2019-01-07T07:00:00Z", "--gap-hours", "100",
                      "--summary", str(summary)]) == 0
    written = json.loads(summary.read_text())
    assert (written["files"], written["rows"], written["messages"]) == (3, 200, 200)
    dropped = {d["path"]: d["reason"] for d in written["dropped"]}
    # VSS 5 took the OBD branch out of the standard; the rest is whatever the contract lacks
    assert {"Vehicle.OBD.BarometricPressure", "Vehicle.OBD.EngineLoad",
            "Vehicle.OBD.IntakeTemp"} <= set(dropped)
    assert set(dropped.values()) == {"not in the contract"}
    assert not set(dropped) & set(SIGNALS)
    assert {"Vehicle.Speed", "Vehicle.LowVoltageBattery.CurrentVoltage"} <= set(
        written["written"])
    alerts, last = replay(out, capsys)
    assert alerts == []
    assert last == "ownercare replay: 200 records, 0 bad lines, 0 alert upserts"
    result = census(out)
    assert (result["records"], result["bad_lines"], result["alerts"]) == (200, 0, [])
    said = {t: " / ".join(a["reason"] for a in d["abstentions"])
            for t, d in result["detectors"].items()}
    # 8 days pass between the idle and the live6 recordings: every trend goes stale, and each
    # detector names the input this petrol car never reports.
    assert "no ambient temperature" in said["weak_12v_battery"]
    assert "no tyre pressure sample" in said["slow_tyre_leak"]
    assert "no resting cell-voltage sample" in said["cell_imbalance"]
    assert "motor coolant" in said["thermal"]
    assert result["detectors"]["dtc"]["calls"] == 200
    assert result["detectors"]["dtc"]["assessments"] == 0


@pytest.mark.parametrize(("loss_psi_per_day", "alerted"), [(0.8, True), (0.0, False)])
def test_a_leaking_tyre_in_a_leafspy_log_is_found_on_its_wheel(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], loss_psi_per_day: float,
        alerted: bool) -> None:
    log = write(tmp_path / "Log_1.csv", drives(T, 12, rl_loss_psi_per_day=loss_psi_per_day))
    out = tmp_path / "leaf.jsonl.gz"
    assert realdata(["convert", "leafspy", str(log), "-o", str(out)]) == 0
    alerts, last = replay(out, capsys)
    assert last.startswith("ownercare replay: 240 records, 0 bad lines")
    raised = [a for a in alerts if a["type"] == "slow_tyre_leak"]
    assert {a["type"] for a in alerts} == ({"slow_tyre_leak"} if alerted else set())
    if alerted:
        assert raised[0]["asset_id"] == VIN
        assert raised[0]["status"] == "open"
        evidence = raised[-1]["evidence"]
        assert isinstance(evidence, dict)
        assert evidence["wheel"] == "rear left"
        # 0.8 psi/day is 5.5 kPa/day: the converted units reach the detector intact
        assert evidence["leak_rate_kpa_per_day"] == pytest.approx(5.5, abs=0.5)
