"""``python -m ownercare.realdata``: bad input is one line on stderr and exit status 2."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from ownercare.realdata.cli import main
from tests.ownercare.realdata.leafspy_logs import row, write

T = 1_546_300_800


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    return code, capsys.readouterr().err.splitlines()


def test_a_bad_row_stops_the_conversion_naming_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write(tmp_path / "Log_1.csv", [row(T), row(T + 5, SOH="x"), row(T + 10)])
    out = tmp_path / "out.jsonl"
    code, err = run(capsys, "convert", "leafspy", str(log), "-o", str(out))
    assert code == 2
    assert not out.exists()
    assert err == [f"ownercare realdata: {log}:3: column 'SOH': 'x' is not a number "
                   "(--skip-bad-rows leaves such rows out)"]


def test_skipping_bad_rows_reports_each_and_converts_the_rest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write(tmp_path / "Log_1.csv", [row(T), row(T + 5, SOH="x"), row(T + 10)])
    out = tmp_path / "out.jsonl.gz"
    code, err = run(capsys, "convert", "leafspy", str(tmp_path), "-o", str(out),
                    "--skip-bad-rows")
    assert code == 0
    assert err[0] == f"skipped {log}:3: column 'SOH': 'x' is not a number"
    assert err[1] == "ownercare realdata: 1 files, 2 rows, 1 bad rows skipped"
    lines = gzip.decompress(out.read_bytes()).splitlines()
    assert [orjson.loads(x)["payload"]["seq"] for x in lines] == [0, 1]


@pytest.mark.parametrize(("argv", "message"), [
    (["convert", "leafspy", "nowhere.csv", "-o", "x.jsonl"],
     "nowhere.csv is neither a file nor a directory"),
    (["convert", "carobd", "{fixtures}", "-o", "x.jsonl"],
     "carobd needs --vin and --start (the recordings have neither)"),
    (["convert", "carobd", "{fixtures}", "-o", "x.jsonl", "--vin", "MBJB29BT000000001",
      "--start", "soon"],
     "--start: timestamp 'soon' is neither epoch milliseconds nor ISO 8601"),
    (["convert", "carobd", "{fixtures}", "-o", "x.jsonl", "--vin", "MBJB29BT000000001",
      "--start", "2019-01-07", "--gap-hours", "-1"], "--gap-hours must be positive, got -1"),
    (["convert", "leafspy", "{log}", "-o", "x.jsonl", "--vin", "1N4AZ0CP5DC99999O"],
     "VIN '1N4AZ0CP5DC99999O' is not 17 characters"),
    (["convert", "leafspy", "{empty}", "-o", "x.jsonl"],
     "no input files (a directory holds no *.csv)"),
    (["convert", "leafspy", "{log}", "-o", "{empty}/no/such/dir/x.jsonl"], "cannot write: "),
    (["census", "missing.jsonl"], "missing.jsonl is not a readable file"),
    (["census", "{binary}"], "holds binary data: it is neither JSON lines, CSV nor"),
])
def test_bad_arguments_are_one_line_and_exit_status_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
        message: str) -> None:
    fixtures = Path(__file__).parents[2] / "fixtures" / "realdata" / "carobd"
    (tmp_path / "empty").mkdir()
    log = write(tmp_path / "Log_1.csv", [row(T)])
    binary = tmp_path / "x.jsonl"
    binary.write_bytes(b"\x00\x01")
    argv = [a.format(fixtures=fixtures, empty=tmp_path / "empty", log=log, binary=binary)
            for a in argv]
    code, err = run(capsys, *argv)
    assert code == 2
    assert len(err) == 1
    assert err[0].startswith("ownercare realdata: ")
    assert message in err[0]


def test_the_module_runs_as_a_command(tmp_path: Path) -> None:
    log = write(tmp_path / "Log_1.csv", [row(T)])
    done = subprocess.run([sys.executable, "-m", "ownercare.realdata", "convert", "leafspy",
                           str(log), "-o", str(tmp_path / "o.jsonl")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "1 messages over 1 vehicle-days" in done.stderr
