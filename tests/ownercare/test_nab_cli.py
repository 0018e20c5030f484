"""`ownercare nab NAB_DIR` on a tiny checkout laid out like NAB's (no NAB data here)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ownercare.cli import main

START = datetime(2014, 4, 1, tzinfo=UTC)


def stamp(i: int) -> str:
    return (START + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S")


def checkout(root: Path) -> Path:
    """Two files of 1000 rows, a spike at row 700 labelled with a window (650, 749); stored
    results of a detector 'edge' that fires at each window's left edge and once at row 300."""
    windows = {}
    for name in ("demo/a.csv", "demo/b.csv"):
        rng = random.Random(name)
        rows = ["timestamp,value"]
        scores = ["timestamp,value,anomaly_score"]
        for i in range(1000):
            value = 10 + rng.gauss(0, 1) + (40 if 700 <= i < 705 else 0)
            rows.append(f"{stamp(i)},{value:.3f}")
            fired = i == 650 or (name == "demo/a.csv" and i == 300)
            scores.append(f"{stamp(i)},{value:.3f},{1.0 if fired else 0.0}")
        (root / "data" / "demo").mkdir(parents=True, exist_ok=True)
        (root / "data" / name).write_text("\n".join(rows) + "\n")
        result = root / "results" / "edge" / "demo" / f"edge_{name.split('/')[1]}"
        result.parent.mkdir(parents=True, exist_ok=True)
        result.write_text("\n".join(scores) + "\n")
        windows[name] = [[f"{stamp(650)}.000000", f"{stamp(749)}.000000"]]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    return root


def test_stored_results_are_scored_with_nab_rules(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    nab = checkout(tmp_path / "NAB")
    assert main(["nab", str(nab), "--results", "edge", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == 2
    assert report["windows"] == 2
    standard = report["profiles"]["standard"]
    # both windows at their left edge (1.0 each), one false positive before any window
    assert standard["raw"] == pytest.approx(2.0 - 0.11, abs=1e-3)
    assert standard["score"] == pytest.approx(100 * (2 - 0.11 + 2) / 4, abs=0.01)
    assert report["profiles"]["reward_low_FP_rate"]["raw"] == pytest.approx(2 - 0.22, abs=1e-3)
    assert report["profiles"]["reward_low_FN_rate"]["score"] == pytest.approx(
        100 * (2 - 0.11 + 4) / 6, abs=0.01)


def test_runs_the_generic_detector_and_benchmarks_it(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    nab = checkout(tmp_path / "NAB")
    assert main(["nab", str(nab), "--workers", "1", "--bench"]) == 0
    out = capsys.readouterr().out
    assert "standard" in out
    assert "scores/s on one core" in out
    assert main(["nab", str(nab), "--workers", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["profiles"]["standard"]["detected_windows"] == 2  # the spikes


def test_a_directory_that_is_not_nab_is_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nab", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "not a NAB checkout" in err
    nab = checkout(tmp_path / "NAB")
    assert main(["nab", str(nab), "--results", "absent"]) == 2
    assert "No such file or directory" in capsys.readouterr().err
