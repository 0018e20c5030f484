"""``ownercare faults`` refuses bad input with one line before it starts any run (the runs
themselves: tests/end_to_end/test_fault_injection.py), and its table says every figure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ownercare import faults


def ownercare_faults(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ownercare", "faults", *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: (d / "file").write_text("x") and d / "file", "is not a directory"),
    (lambda d: (d / "used").mkdir() or (d / "used" / "baseline").mkdir() or d / "used",
     "is not empty; give a new or empty directory"),
])
def test_a_workdir_it_cannot_use_is_one_line(tmp_path: Path, make: object,
                                             message: str) -> None:
    workdir = make(tmp_path)  # type: ignore[operator]
    result = ownercare_faults("--workdir", str(workdir), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("ownercare faults: --workdir ")
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_an_unknown_kafka_storage_is_refused(tmp_path: Path) -> None:
    result = ownercare_faults("--kafka-storage", "tape", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice: 'tape'" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("--kill", "bridge,router"), "--kill: 'bridge,router': give each of"),
    (("--kill", "api,api"), "at most once"),
    (("--kill", "mqtt,tansu"), "--kill tansu needs --kafka-storage disk"),
])
def test_a_kill_list_it_cannot_run_is_refused(tmp_path: Path, args: tuple[str, ...],
                                              message: str) -> None:
    result = ownercare_faults(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())  # refused before any run started


def test_by_default_every_process_the_storage_survives_is_killed() -> None:
    assert faults.default_kills("memory") == (*faults.TARGETS, "mqtt")
    assert faults.default_kills("disk") == (*faults.TARGETS, "mqtt", "tansu", "kafka-s3")


def test_the_table_names_every_figure() -> None:
    kills = [{"target": t, "pid": 1, "during_publishing": True, "survived": True,
              "recovered_s": 2.5} for t in faults.TARGETS]
    figures = {"faults_tried": 4, "faults_survived": 4, "messages_sent": 100,
               "distinct_records": 100, "records_lost": 0, "records_out_of_order": 0,
               "alerts_baseline": 3, "alerts_equal": 3, "alerts_lost": 0,
               "alerts_duplicated": 0, "alerts_false": 0, "kills": kills,
               "kafka": {"stopped_within_s": 1.5, "exit_code": 1, "stop_line": "ownercare run: x",
                         "unprocessed_records_lost_at_least": 7, "alerts_kept": 2,
                         "alerts_before": 2, "resume_detects_new_data": True}}
    table = faults.table(figures)
    assert "| faults tried (kill -9) | 4 |" in table
    assert "| records lost | 0 |" in table
    assert "| alerts false | 0 |" in table
    assert [line.split(" | ")[:2] for line in table.splitlines()
            if line.split(" | ")[0] in {f"| {t}" for t in faults.TARGETS}] == [
        [f"| {t}", "yes"] for t in faults.TARGETS]
    assert "| alerts kept in the database | 2 of 2 |" in table


def alert(asset: str, kind: str, first_seen: int) -> dict[str, object]:
    return {"asset_id": asset, "type": kind, "first_seen_event_ms": first_seen}


def test_alerts_match_by_asset_type_and_first_seen() -> None:
    hour = 3_600_000
    baseline = [alert("CP-1", "charger_silent", 10 * hour), alert("V1", "dtc", 5)]
    assert faults.match_alerts(baseline, list(reversed(baseline))) == {
        "alerts_baseline": 2, "alerts_equal": 2, "alerts_lost": 0, "alerts_duplicated": 0,
        "alerts_false": 0}
    # Every alert must have the same first_seen, a silence alert's too (its sweep boundary
    # does not depend on batching): one a quarter-hour off is lost and false.
    assert faults.match_alerts(baseline, [
        alert("CP-1", "charger_silent", 10 * hour - hour // 4), alert("V1", "dtc", 6),
        alert("V1", "dtc", 5), alert("V2", "vehicle_silent", hour)]) == {
        "alerts_baseline": 2, "alerts_equal": 1, "alerts_lost": 1, "alerts_duplicated": 1,
        "alerts_false": 2}
