"""``ownercare soak``'s arithmetic and its refusals (the soak itself runs for half an hour), and
one short soak under the load generator through the real stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ownercare import cli
from ownercare.soak import Sample, slope_per_hour, stack_processes, summarise


def test_a_steady_climb_is_measured_in_mib_per_hour() -> None:
    points = [(t, 100.0 + t / 60) for t in range(0, 1800, 30)]  # 1 MiB a minute
    assert slope_per_hour(points) == pytest.approx(60.0)


@given(st.floats(min_value=1, max_value=5000), st.integers(min_value=2, max_value=50))
def test_a_flat_series_has_no_slope(level: float, n: int) -> None:
    assert slope_per_hour([(float(i * 30), level) for i in range(n)]) == pytest.approx(0.0,
                                                                                      abs=1e-6)


def test_one_sample_time_has_no_slope() -> None:
    assert slope_per_hour([(10.0, 5.0), (10.0, 7.0)]) is None


def test_only_the_second_half_decides_flatness() -> None:
    # Start-up growth (first half) then flat: the summary says flat, and keeps the peak.
    samples = [Sample(float(t), "worker", min(200.0, 50.0 + t)) for t in range(0, 601, 30)]
    summary = summarise(samples)["worker"]
    assert summary["second_half_mib_per_h"] == pytest.approx(0.0)
    assert summary["first_mib"] == 50.0
    assert summary["peak_mib"] == 200.0


def test_the_stacks_processes_come_from_run_json() -> None:
    info = {"pid": 1, "mqtt_pid": 5, "tansu_pid": 2, "kafka_s3_pid": None,
            "services": {"bridge": {"pid": 3}, "worker": {"pid": 4}}}
    assert stack_processes(info) == {"run": 1, "mqtt": 5, "tansu": 2, "bridge": 3, "worker": 4}


@pytest.mark.parametrize("flag", ["--state-dir", "--api-port", "--resume"])
def test_the_soak_chooses_its_own_state_dir_and_ports(
        flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["soak", "--minutes", "1", "--", flag, "x"]) == 2
    assert f"ownercare soak: {flag}: chosen by the soak itself" in capsys.readouterr().err


def test_a_bad_duration_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["soak", "--minutes", "-3"])
    assert stop.value.code == 2
    assert "--minutes" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_a_bad_load_is_one_line(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["soak", "--load", value])
    assert stop.value.code == 2
    assert "--load" in capsys.readouterr().err


@pytest.mark.integration
def test_a_short_soak_under_the_load_generator_samples_the_whole_stack(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "soak"
    assert cli.main(["soak", "--minutes", "1.5", "--every", "5", "--load", "200",
                     "--out", str(out)]) == 0
    report = json.loads((out / "soak.json").read_text())
    assert "--no-simulator" in report["command"]
    assert "simulators.load paced --vehicles 200" in report["command"]
    # The generator's messages went through the bridge (the first samples include start-up).
    assert report["bridge_msgs_per_s"] > 100, report
    assert {"run", "mqtt", "bridge", "worker", "api", "tansu"} <= set(report["processes"]), \
        report
    assert (out / "soak.csv").read_text().count("\n") > 10
    assert "simulator" not in report["processes"]
