"""A user's mistake is one line on stderr and exit status 2, never a traceback: the real CLI,
run as a subprocess, one case per kind of mistake."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

# A database nobody listens for (port 1), with a password that must never be printed.
UNREACHABLE = "postgresql://care:s3cret@127.0.0.1:1/ownercare"


def ownercare(*args: str, cwd: Path, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ownercare", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env={**os.environ, **(env or {})})


def one_line_error(result: subprocess.CompletedProcess[str], prefix: str) -> str:
    """The single stderr line of a refused command (exit status 2), checked."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


def test_version_comes_from_the_package_metadata(tmp_path: Path) -> None:
    result = ownercare("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ownercare {metadata.version('ownercare')}"


@pytest.mark.parametrize(("out", "reason"), [
    ("/proc/nope", ": cannot write the key pair there (No such file or directory)"),
    ("/dev/null", " exists and is not a directory"),
])
def test_ota_keygen_into_a_place_it_cannot_write(tmp_path: Path, out: str, reason: str) -> None:
    line = one_line_error(ownercare("ota", "keygen", "--out", out, cwd=tmp_path),
                          f"ownercare ota keygen: --out {out}")
    assert line == f"ownercare ota keygen: --out {out}{reason}"


@pytest.mark.parametrize("action", [["list"], ["revoke", "k_123"],
                                    ["create", "--role", "agent", "--name", "desk"]])
def test_keys_with_an_unreachable_database(tmp_path: Path, action: list[str]) -> None:
    line = one_line_error(
        ownercare("keys", *action, cwd=tmp_path, env={"OWNERCARE_DATABASE_URL": UNREACHABLE}),
        f"ownercare keys {action[0]}: cannot open the database "
        "postgresql://care:***@127.0.0.1:1/ownercare (OWNERCARE_DATABASE_URL): ")
    assert "s3cret" not in line


def test_keys_with_a_database_file_that_cannot_be_created(tmp_path: Path) -> None:
    one_line_error(ownercare("keys", "list", cwd=tmp_path, env={
        "OWNERCARE_DATABASE_URL": f"sqlite:///{tmp_path}/missing/dir/ownercare.db"}),
        f"ownercare keys list: cannot open the database sqlite:///{tmp_path}/missing/dir/"
        "ownercare.db (OWNERCARE_DATABASE_URL): unable to open database file")


def test_keys_with_a_state_dir_that_cannot_be_made(tmp_path: Path) -> None:
    one_line_error(ownercare("keys", "list", cwd=tmp_path,
                             env={"OWNERCARE_STATE_DIR": "/proc/ownercare"}),
                   "ownercare keys list: OWNERCARE_STATE_DIR=/proc/ownercare: ")


def test_a_service_whose_database_is_unreachable(tmp_path: Path) -> None:
    one_line_error(ownercare("api", cwd=tmp_path, env={"OWNERCARE_DATABASE_URL": UNREACHABLE,
                                                       "OWNERCARE_API_PORT": "1"}),
                   "ownercare api: cannot open the database postgresql://care:***@")


def test_invalid_settings_name_the_variable(tmp_path: Path) -> None:
    result = ownercare("config", "worker", cwd=tmp_path, env={"OWNERCARE_PARTITIONS": "0"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "OWNERCARE_PARTITIONS: Input should be greater than or equal to 1" in result.stderr


def test_replay_of_a_missing_file_or_a_directory(tmp_path: Path) -> None:
    one_line_error(ownercare("replay", str(tmp_path / "nope.jsonl"), cwd=tmp_path),
                   f"ownercare replay: '{tmp_path / 'nope.jsonl'}' is not a readable file")
    one_line_error(ownercare("replay", str(tmp_path), cwd=tmp_path),
                   f"ownercare replay: '{tmp_path}' is not a readable file")


def test_replay_of_binary_data(tmp_path: Path) -> None:
    garbage = tmp_path / "fleet.jsonl"
    garbage.write_bytes(bytes(range(256)) * 64)
    one_line_error(ownercare("replay", str(garbage), cwd=tmp_path),
                   f"ownercare replay: {garbage} holds binary data")


def test_replay_of_a_file_that_only_starts_like_gzip(tmp_path: Path) -> None:
    fake = tmp_path / "fleet.jsonl.gz"
    fake.write_bytes(b"\x1f\x8b" + b"not really deflate data" * 10)
    one_line_error(ownercare("replay", str(fake), cwd=tmp_path),
                   f"ownercare replay: {fake} starts like gzip but is not a readable gzip file")


def test_replay_of_a_truncated_recording_replays_what_is_there(tmp_path: Path) -> None:
    line = (b'{"topic":"vehicles/WCRBE2C73RF036187/telemetry","payload":{"ts":%d,"seq":%d,'
            b'"signals":{"Vehicle.Speed":0.0}}}\n')
    body = gzip.compress(b"".join(line % (1_767_571_200_000 + n * 60_000, n)
                                  for n in range(2000)))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(body[: len(body) * 2 // 3])
    result = ownercare("replay", str(cut), cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # bad lines, as for any damaged line
    assert "Traceback" not in result.stderr
    damaged, summary = result.stderr.strip().splitlines()
    assert damaged.startswith(f"{cut}:")
    assert "the gzip stream is damaged or truncated here" in damaged
    records = int(summary.split()[2])
    assert 0 < records < 2000
    assert summary == f"ownercare replay: {records} records, 1 bad lines, 0 alert upserts"


@pytest.mark.parametrize(("args", "message"), [
    (["--days", "0"], "argument --days: must be > 0, got 0"),
    (["--seeds", "5-1"], "argument --seeds: '5-1': the last seed is before the first"),
    (["--seed", "1", "--seeds", "1-2"], "argument --seeds: not allowed with argument --seed"),
    (["--faults", "gremlins:1"], "unknown fault 'gremlins'"),
    (["--vehicles", "0", "--chargers", "0"], "the fleet is empty"),
    (["--json", "/"], "--json: '/' is a directory; give a file name"),
    (["--record", "/no/such/dir/x.jsonl.gz"], "--record: directory '/no/such/dir' does not exist"),
    (["--seeds", "1-2", "--record", "x.jsonl"], "--plot and --record draw one run"),
])
def test_eval_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    result = ownercare("eval", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1]


def test_backtest_alias_bad_arguments(tmp_path: Path) -> None:
    result = ownercare("backtest", "--drive-interval", "30", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "ownercare backtest: --drive-interval: ownercare eval has no such flag")


@pytest.mark.parametrize(("flag", "instead"), [
    (["--mqtt-url", "mqtt://broker:1883"], "its port: --mqtt-port"),
    (["--mqtt-protocol", "5"], "`ownercare simulate --mqtt-protocol 5`"),
    (["--print-truth"], "--truth FILE"),
])
def test_run_refuses_simulator_flags_it_would_ignore(tmp_path: Path, flag: list[str],
                                                     instead: str) -> None:
    line = one_line_error(ownercare("run", *flag, cwd=tmp_path),
                          f"ownercare run: {flag[0]} does not apply: ")
    assert instead in line
    assert not (tmp_path / ".ownercare").exists()


def free_ports() -> list[str]:
    from ownercare.embedded import free_port

    return ["--api-port", str(free_port()), "--mqtt-port", str(free_port()),
            "--kafka-port", str(free_port())]


def test_run_with_an_unreachable_database(tmp_path: Path) -> None:
    line = one_line_error(
        ownercare("run", "--state-dir", str(tmp_path / "s"), *free_ports(), cwd=tmp_path,
                  env={"OWNERCARE_DATABASE_URL": UNREACHABLE}),
        "ownercare run: cannot open the database postgresql://care:***@127.0.0.1:1/ownercare "
        "(OWNERCARE_DATABASE_URL): ")
    assert "s3cret" not in line
    assert not (tmp_path / "s").exists()


def test_run_with_a_state_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    one_line_error(ownercare("run", "--state-dir", str(tmp_path / "state"), *free_ports(),
                             cwd=tmp_path),
                   f"ownercare run: --state-dir {tmp_path / 'state'} exists and is not a "
                   "directory")


def test_run_help_states_every_default(tmp_path: Path) -> None:
    import argparse

    from ownercare.cli import build_parser

    result = ownercare("run", "--help", cwd=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--speed SPEED simulated seconds per wall-clock second (default 1: real time" in text
    parser = build_parser()
    run = next(a for a in parser._actions
               if isinstance(a, argparse._SubParsersAction)).choices["run"]
    shown = [a for a in run._actions
             if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]
    assert len(shown) >= 20
    for action in shown:
        assert "default" in (action.help or ""), action.option_strings
        assert " ".join((action.help or "").split()[:3]) in text  # and --help shows it
