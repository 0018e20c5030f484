"""``ownercare replay``: recorded JSON lines and CSV through the detectors (no brokers)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ingest.contract import SIGNALS, SignalType
from ownercare.cli import main
from ownercare.evaluation.run import run_scenario
from ownercare.evaluation.scenario import Scenario
from ownercare.replay import format_of, parse_csv, parse_jsonl, parse_timestamp, read_file

VIN = "WCRBE2C73RF036187"
VIN2 = "WCRCE3A19KY228278"
T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z
VOLTS = "Vehicle.LowVoltageBattery.CurrentVoltage"
SPEED = "Vehicle.Speed"
MOVING = "Vehicle.IsMoving"
STATE = "Vehicle.LowVoltageSystemState"
CELL_ID = "Vehicle.Powertrain.TractionBattery.CellVoltage.IdMin"


def csv_text(rows: list[tuple[object, ...]], header: str = "timestamp,vin,signal,value") -> str:
    out = io.StringIO()
    out.write(header + "\n")
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def test_replaying_a_recorded_fleet_gives_the_alerts_of_its_eval(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = Scenario(seed=6, vehicles=8, chargers=1, days=8,
                        faults={"dtc": 2, "weak_12v": 1}, drive_interval_s=300,
                        parked_interval_s=3600)
    recording = tmp_path / "fleet.jsonl"
    evaluated = run_scenario(scenario, processes=2, record=recording)
    assert evaluated.alerts  # the faults were alerted, so the comparison means something
    code = main(["replay", str(recording), "--until", str(evaluated.end_ms)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    replayed = [json.loads(line) for line in captured.out.splitlines()]
    assert replayed == evaluated.alerts
    assert f"{evaluated.messages} records, 0 bad lines" in captured.err


def test_a_gzip_recording_is_the_same_stream_and_replays_alike_whatever_its_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = Scenario(seed=6, vehicles=8, chargers=1, days=8,
                        faults={"dtc": 2, "weak_12v": 1}, drive_interval_s=300,
                        parked_interval_s=3600)
    plain, packed = tmp_path / "fleet.jsonl", tmp_path / "fleet.jsonl.gz"
    evaluated = run_scenario(scenario, processes=1, record=plain)
    assert evaluated.alerts
    assert run_scenario(scenario, processes=2, record=packed).alerts == evaluated.alerts
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    assert packed.stat().st_size * 5 < plain.stat().st_size
    renamed = tmp_path / "renamed.jsonl"  # gzip is told by its first bytes, not by its name
    renamed.write_bytes(packed.read_bytes())
    for path in (packed, renamed):
        code = main(["replay", str(path), "--until", str(evaluated.end_ms)])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert [json.loads(line) for line in captured.out.splitlines()] == evaluated.alerts
        assert captured.err == (f"ownercare replay: {evaluated.messages} records, 0 bad lines, "
                                f"{len(evaluated.alerts)} alert upserts\n")


def test_a_gzip_csv_is_read_as_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "history.CSV.gz"
    assert format_of(path) == "csv"
    assert format_of(tmp_path / "history.jsonl.gz") == "jsonl"
    rows = [(str(T0 + i * 60_000), VIN, SPEED, "30") for i in range(3)]
    path.write_bytes(gzip.compress(csv_text(rows).encode()))
    assert main(["replay", str(path)]) == 0
    assert "3 records, 0 bad lines" in capsys.readouterr().err


@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"") + b"\n")
                | st.sampled_from([b'{"topic":"vehicles/' + VIN.encode() + b'/telemetry",'
                                   b'"payload":{"ts":%d,"seq":1,"signals":{}}}\n' % T0,
                                   b"\n", b"timestamp,vin,signal,value\n",
                                   f"{T0},{VIN},{SPEED},3\n".encode()]), max_size=20),
       st.sampled_from(["jsonl", "csv"]))
def test_plain_and_gzip_files_parse_the_same(lines: list[bytes], fmt: str) -> None:
    body = b"".join(lines)
    assume(not body.startswith(b"\x1f\x8b"))  # that is gzip, whatever else it might be
    with tempfile.TemporaryDirectory() as directory:
        plain, packed = Path(directory) / "plain", Path(directory) / "packed"
        plain.write_bytes(body)
        packed.write_bytes(gzip.compress(body))
        assert read_file(packed, fmt) == read_file(plain, fmt)


def test_csv_rows_of_one_car_and_instant_become_one_message_in_event_time_order() -> None:
    rows = [
        ("2026-01-05T00:10:00Z", VIN, VOLTS, "12.61"),
        (str(T0), VIN, VOLTS, "12.7"),  # epoch ms, earlier: sorted first
        (str(T0), VIN, MOVING, "false"),
        ("2026-01-05T00:00:00", VIN, SPEED, "0"),  # naive ISO = UTC, the same instant
        (str(T0), VIN2, STATE, "OFF"),
        (str(T0 + 600_000), VIN, CELL_ID, "17"),
    ]
    parsed = parse_csv(io.StringIO(csv_text(rows)))
    assert parsed.errors == []
    records = sorted((r for _line, r in parsed.records), key=lambda r: (r["ts"], r["id"]))
    assert [(r["id"], r["ts"], r["seq"]) for r in records] == [
        (VIN, T0, 0), (VIN2, T0, 0), (VIN, T0 + 600_000, 1)]
    assert records[0]["data"]["signals"] == {VOLTS: 12.7, MOVING: False, SPEED: 0.0}
    assert records[1]["data"]["signals"] == {STATE: "OFF"}
    assert records[2]["data"]["signals"] == {VOLTS: 12.61, CELL_ID: 17}
    assert records[0]["kind"] == "vehicle_telemetry"


def test_bad_csv_rows_are_reported_with_their_line_and_reason() -> None:
    rows = [
        (str(T0), VIN, VOLTS, "12.6"),  # line 2: fine
        (str(T0 + 1), VIN, VOLTS, "twelve"),  # line 3
        (str(T0 + 2), VIN, "Vehicle.Warp.Drive", "1"),  # line 4
        ("yesterday", VIN, VOLTS, "12.5"),  # line 5
        (str(T0 + 3), "NOT-A-VIN", VOLTS, "12.5"),  # line 6
        (str(T0 + 4), VIN, VOLTS, "55"),  # line 7: outside the plausible range
        (str(T0 + 5), VIN, MOVING, "maybe"),  # line 8
        (str(T0 + 6), VIN, VOLTS),  # line 9: a column short
        (str(T0), VIN, VOLTS, "12.6"),  # line 10: the same signal twice at one instant
    ]
    parsed = parse_csv(io.StringIO(csv_text(rows)))
    errors = dict(parsed.errors)
    assert sorted(errors) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert "'twelve' is not a float" in errors[3]
    assert "'Vehicle.Warp.Drive' is not in the contract" in errors[4]
    assert "'yesterday' is neither epoch milliseconds nor ISO 8601" in errors[5]
    assert "NOT-A-VIN" in errors[6]
    assert "out_of_range" in errors[7]
    assert "'maybe' is not a bool" in errors[8]
    assert "expected 4 columns" in errors[9]
    assert "given twice" in errors[10]
    assert len(parsed.records) == 1


def test_a_line_the_csv_module_cannot_read_is_reported_and_the_rest_still_parsed() -> None:
    text = csv_text([(str(T0), VIN, VOLTS, "x" * 200_000), (str(T0), VIN, VOLTS, "12.6")])
    parsed = parse_csv(io.StringIO(text, newline=""))
    assert [(n, reason[:8]) for n, reason in parsed.errors] == [(2, "not CSV ")]
    assert [n for n, _record in parsed.records] == [3]


def test_a_csv_without_the_header_is_refused() -> None:
    parsed = parse_csv(io.StringIO(f"{T0},{VIN},{VOLTS},12.6\n"))
    assert parsed.records == []
    assert parsed.errors[0][0] == 1
    assert "header must be timestamp,vin,signal,value" in \
        parsed.errors[0][1]


def test_jsonl_accepts_the_payload_as_object_or_string_and_reports_bad_lines() -> None:
    payload = {"ts": T0, "seq": 1, "signals": {VOLTS: 12.6}}
    lines = [
        orjson.dumps({"topic": f"vehicles/{VIN}/telemetry", "payload": payload}),
        orjson.dumps({"topic": f"vehicles/{VIN}/telemetry", "payload": json.dumps(payload)}),
        b"",
        b"{not json",
        orjson.dumps({"topic": f"vehicles/{VIN}/telemetry"}),
        orjson.dumps({"topic": f"vehicles/{VIN}/telemetry",
                      "payload": {"ts": T0, "signals": {VOLTS: 12.6}}}),
        orjson.dumps({"topic": "garage/door", "payload": payload}),
    ]
    parsed = parse_jsonl(lines)
    assert [line for line, _ in parsed.records] == [1, 2]
    assert parsed.records[0][1] == parsed.records[1][1]
    errors = dict(parsed.errors)
    assert sorted(errors) == [4, 5, 6, 7]
    assert errors[4].startswith("not JSON")
    assert '"payload"' in errors[5]
    assert "missing_field: required field 'seq'" in errors[6]
    assert "unknown_topic" in errors[7]


def test_a_bad_signal_is_reported_alone_and_its_lines_other_signals_are_kept() -> None:
    """As at the bridge: per-signal validation, not the whole line."""
    def line(signals: dict[str, object]) -> bytes:
        return orjson.dumps({"topic": f"vehicles/{VIN}/telemetry",
                             "payload": {"ts": T0, "seq": 1, "signals": signals}})

    parsed = parse_jsonl([line({VOLTS: 12.6, "Vehicle.Nope": 1.0, "Vehicle.Speed": 999.0}),
                          line({"Vehicle.Nope": 1.0})])
    assert [(n, r["data"]["signals"]) for n, r in parsed.records] == [(1, {VOLTS: 12.6})]
    assert [n for n, _ in parsed.errors] == [1, 1, 2]
    reasons = [reason for _, reason in parsed.errors]
    assert reasons[0].startswith("unknown_signal")
    assert "Vehicle.Nope" in reasons[0]
    assert reasons[1].startswith("out_of_range")
    assert "Vehicle.Speed" in reasons[1]
    assert all("other signals are kept" in r for r in reasons)


def test_replay_cli_prints_alerts_and_fails_when_a_line_was_bad(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "history.csv"
    rows = [(str(T0 + i * 60_000), VIN, "Vehicle.Speed", "30") for i in range(3)]
    path.write_text(csv_text([*rows, (str(T0), VIN, "Vehicle.Speed", "fast")]))
    code = main(["replay", str(path)])
    captured = capsys.readouterr()
    assert code == 1
    assert f"{path}:5: value 'fast' is not a float" in captured.err
    assert "3 records, 1 bad lines" in captured.err


@pytest.mark.parametrize(("argv", "message"), [
    (["/nonexistent.jsonl"], "'/nonexistent.jsonl' is not a readable file"),
    (["x.csv", "--until", "soon"], "--until: timestamp 'soon'"),
])
def test_replay_rejects_bad_arguments(argv: list[str], message: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", *argv]) == 2
    assert message in capsys.readouterr().err


def test_replay_until_must_be_after_the_last_record(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.csv"
    path.write_text(csv_text([(str(T0 + 10), VIN, SPEED, "3")]))
    assert main(["replay", str(path), "--until", str(T0)]) == 2
    assert "is not after the last record" in capsys.readouterr().err


# ---------------------------------------------------------------- property tests (CSV parser)

_CSV_SIGNALS = sorted(p for p, s in SIGNALS.items()
                      if s.type in (SignalType.FLOAT, SignalType.INT, SignalType.BOOL,
                                    SignalType.ENUM))


@st.composite
def signal_value(draw: st.DrawFn) -> tuple[str, object, str]:
    """(signal, value, its CSV text) for a valid value of a random catalogue signal."""
    path = draw(st.sampled_from(_CSV_SIGNALS))
    spec = SIGNALS[path]
    if spec.type is SignalType.FLOAT:
        value: object = draw(st.floats(spec.min, spec.max, allow_nan=False,
                                       allow_infinity=False))
        return path, float(value), repr(value)  # type: ignore[arg-type]
    if spec.type is SignalType.INT:
        value = draw(st.integers(int(spec.min if spec.min is not None else 0),
                                 int(spec.max if spec.max is not None else 10**6)))
        return path, value, str(value)
    if spec.type is SignalType.BOOL:
        value = draw(st.booleans())
        return path, value, draw(st.sampled_from(["true", "1"] if value else ["false", "0"]))
    value = draw(st.sampled_from(sorted(spec.allowed or ())))
    return path, value, str(value)


@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from([VIN, VIN2]), signal_value(),
                          st.booleans()), max_size=30),
       st.randoms(use_true_random=False))
def test_csv_parser_round_trips_any_valid_rows_in_any_order(rows: list, rnd: random.Random
                                                            ) -> None:
    expected: dict[tuple[int, str], dict[str, object]] = {}
    lines = []
    for minute, vin, (path, value, text), iso in rows:
        ts = T0 + minute * 60_000
        if path in expected.get((ts, vin), {}):
            continue  # one value per signal and instant
        expected.setdefault((ts, vin), {})[path] = value
        stamp = f"2026-01-05T00:{minute:02d}:00Z" if iso else str(ts)
        lines.append((stamp, vin, path, text))
    rnd.shuffle(lines)
    parsed = parse_csv(io.StringIO(csv_text(lines)))
    assert parsed.errors == []
    got = {(r["ts"], r["id"]): r["data"]["signals"] for _line, r in parsed.records}
    assert got == expected
    for vin in (VIN, VIN2):  # seq counts each car's messages in event-time order
        mine = sorted((r["ts"], r["seq"]) for _line, r in parsed.records if r["id"] == vin)
        assert [seq for _ts, seq in mine] == list(range(len(mine)))


_CELL = st.one_of(st.text(st.characters(blacklist_characters="\r\n"), max_size=12),
                  st.sampled_from([str(T0), "2026-01-05T00:00:00Z", VIN, VIN2, VOLTS, MOVING,
                                   "12.6", "true", "OFF", ""]))


@given(st.lists(st.lists(_CELL, min_size=0, max_size=6), max_size=12))
def test_csv_parser_accounts_for_every_row_of_any_input(rows: list[list[str]]) -> None:
    text = csv_text([tuple(r) for r in rows])
    parsed = parse_csv(io.StringIO(text, newline=""))
    data_lines = [n for n, row in enumerate(csv.reader(io.StringIO(text, newline="")),
                                            start=1)
                  if n > 1 and row and any(cell.strip() for cell in row)]
    # Every non-blank row is either an error naming its line or one signal of a record:
    # nothing is dropped without a word, nothing counted twice.
    reported = [n for n, _reason in parsed.errors]
    assert len(reported) == len(set(reported))
    assert set(reported) <= set(data_lines)
    signals = sum(len(r["data"]["signals"]) for _n, r in parsed.records)
    assert len(reported) + signals == len(data_lines)


@given(st.integers(946_684_800_000, 4_102_444_800_000))
def test_timestamps_in_epoch_ms_and_iso_agree(ms: int) -> None:
    from datetime import UTC, datetime

    iso = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    assert parse_timestamp(str(ms)) == ms
    assert parse_timestamp(iso) == ms
