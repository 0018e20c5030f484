"""`ownercare score FILE.csv` through the CLI's main()."""

from __future__ import annotations

import csv
import io
import math
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.generic import score_series
from ownercare.cli import main
from ownercare.score import parse_time

T0 = 1_767_225_600_000


def write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def series(n: int = 600) -> list[list[object]]:
    rng = random.Random(1)
    rows: list[list[object]] = []
    for i in range(n):
        stamp = f"2026-01-{1 + i // 288:02d}T{(i % 288) // 12:02d}:{(i % 12) * 5:02d}:00"
        rows.append([stamp, round(20 + 3 * math.sin(i / 20) + rng.gauss(0, 0.3), 3),
                     round(rng.uniform(0, 50), 2), "x"])
    rows.append(["2026-01-03T02:00:00", 90.0, 20.0, "x"])
    return rows


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_scores_the_value_column_exactly_as_the_streaming_detector(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", ["timestamp", "value", "power", "note"], series())
    out = tmp_path / "out.csv"
    assert main(["score", str(src), "--out", str(out)]) == 0
    rows = read(out)
    assert list(rows[0]) == ["timestamp", "value", "power", "note", "anomaly_score"]
    scores = [float(r["anomaly_score"]) for r in rows]
    expected = score_series([(T0 + i * 300_000, float(r["value"])) for i, r in
                             enumerate(rows)])
    assert scores == [round(s, 6) for s in expected]
    assert scores[-1] > 0.99
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_several_value_columns_give_one_joint_score(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path / "in.csv", ["when", "value", "power", "note"],
                [[T0 // 1000 + i * 300, *row[1:]] for i, row in enumerate(series())])
    assert main(["score", str(src), "--timestamp-col", "when", "--value-col", "value",
                 "--value-col", "power"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "when,value,power,note,anomaly_score"
    assert len(lines) == 602
    assert all(0.0 <= float(line.rsplit(",", 1)[1]) <= 1.0 for line in lines[1:])


@pytest.mark.parametrize(("row", "message"), [
    (["yesterday", "1.0", "2", "x"], "in.csv:4: unparseable time 'yesterday' in column "
     "'timestamp'"),
    (["2026-01-01T00:10:00", "n/a", "2", "x"], "in.csv:4: non-numeric value 'n/a' in column "
     "'value'"),
    (["2026-01-01T00:10:00", "nan", "2", "x"], "in.csv:4: non-numeric value 'nan'"),
    (["2025-12-31T23:00:00", "1.0", "2", "x"], "in.csv:4: time '2025-12-31T23:00:00' is "
     "earlier than the row before"),
    (["2026-01-01T00:10:00", "1.0"], "in.csv:4: 2 fields, the header has 4"),
])
def test_bad_rows_get_one_line_numbered_error_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], row: list[object],
        message: str) -> None:
    good: list[list[object]] = [["2026-01-01T00:00:00", "1.0", "2", "x"],
                                ["2026-01-01T00:05:00", "1.5", "2", "x"]]
    src = write(tmp_path / "in.csv", ["timestamp", "value", "power", "note"], [*good, row])
    out = tmp_path / "out.csv"
    assert main(["score", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("ownercare score: ")
    assert message in err
    assert not out.exists()


def test_missing_column_and_missing_file(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path / "in.csv", ["timestamp", "value"], [["2026-01-01T00:00:00", "1"]])
    assert main(["score", str(src), "--value-col", "speed"]) == 2
    err = capsys.readouterr().err
    assert "in.csv:1: no column 'speed' (columns: timestamp, value)" in err
    assert err.count("\n") == 1
    assert main(["score", str(src), "--value-col", "value", "--value-col", "value"]) == 2
    assert "in.csv:1: value column 'value' given twice" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "absent.csv")]) == 2
    err = capsys.readouterr().err
    assert "absent.csv: No such file or directory" in err
    assert "Traceback" not in err


# hypothesis takes naive bounds and attaches the zones itself
LOW, HIGH = datetime(1971, 1, 1), datetime(2200, 1, 1)  # noqa: DTZ001


@settings(max_examples=100, deadline=None)
@given(st.datetimes(min_value=LOW, max_value=HIGH,
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)),
                                               timezone(timedelta(hours=5, minutes=30))])))
def test_parse_time_reads_iso_8601_and_epoch_numbers(moment: datetime) -> None:
    expected = moment.timestamp() * 1000.0
    assert parse_time(moment.isoformat()) == pytest.approx(expected, abs=1e-3)
    naive = moment.astimezone(UTC).replace(tzinfo=None)
    assert parse_time(naive.isoformat(sep=" ")) == pytest.approx(expected, abs=1e-3)
    seconds = int(moment.timestamp())
    assert parse_time(str(seconds)) == seconds * 1000.0
    if seconds * 1000 > 1e11:  # milliseconds before March 1973 read as seconds (documented)
        assert parse_time(str(seconds * 1000)) == seconds * 1000.0


def test_reads_standard_input(monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    text = "timestamp,value\n" + "".join(f"{1_767_225_600 + 60 * i},{i % 5}\n"
                                         for i in range(200))
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["score", "-"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "timestamp,value,anomaly_score"
    assert len(lines) == 201
    monkeypatch.setattr("sys.stdin", io.StringIO("timestamp,value\n1,2\n0,2\n"))
    assert main(["score", "-"]) == 2
    assert "<stdin>:3: time '0' is earlier than the row before" in capsys.readouterr().err
