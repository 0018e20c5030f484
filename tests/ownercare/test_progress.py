"""Progress bars of ``eval`` and ``replay``: drawn when stderr is a terminal (a real pty here),
and not one byte of them when it is not, so logs and redirected output stay clean."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

from ownercare.evaluation.run import run_scenario
from ownercare.evaluation.scenario import Scenario

COMMAND = [sys.executable, "-m", "ownercare"]
ENV = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}


def on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run with stderr on a pty: (exit status, stdout, what the terminal received)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen([*COMMAND, *args], stdout=subprocess.PIPE, stderr=slave, cwd=cwd,
                            env=ENV)
    os.close(slave)
    received = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    assert proc.stdout is not None
    stdout = proc.stdout.read().decode()
    code = proc.wait(300)
    reader.join(30)
    os.close(master)
    return code, stdout, received.decode(errors="replace")


def piped(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=ENV)


def test_replay_draws_its_progress_only_on_a_terminal(tmp_path: Path) -> None:
    recording = tmp_path / "fleet.jsonl.gz"
    scenario = Scenario(seed=6, vehicles=8, chargers=1, days=8,
                        faults={"dtc": 2, "weak_12v": 1}, drive_interval_s=300,
                        parked_interval_s=3600)
    evaluated = run_scenario(scenario, processes=1, record=recording)
    args = ["replay", str(recording), "--until", str(evaluated.end_ms)]

    code, stdout, terminal = on_a_terminal(args, tmp_path)
    assert code == 0, terminal
    assert "reading fleet.jsonl.gz" in terminal
    assert "detecting" in terminal
    assert f" {evaluated.messages}/{evaluated.messages} records" in terminal  # to the end
    assert "\x1b[" not in stdout  # the alerts on stdout carry no terminal codes

    plain = piped(args, tmp_path)
    assert plain.returncode == 0
    assert plain.stdout == stdout
    assert plain.stderr == (f"ownercare replay: {evaluated.messages} records, 0 bad lines, "
                            f"{len(evaluated.alerts)} alert upserts\n")


def test_eval_draws_its_progress_per_seed_only_on_a_terminal(tmp_path: Path) -> None:
    args = ["eval", "--vehicles", "4", "--chargers", "1", "--days", "3", "--faults", "dtc:1",
            "--seeds", "1-2"]
    code, stdout, terminal = on_a_terminal(args, tmp_path)
    assert code == 0, terminal
    assert "seed 1 (1 of 2)" in terminal
    assert "seed 2 (2 of 2)" in terminal
    assert " 0/3 days" in terminal
    assert " 3/3 days" in terminal  # moved by the records' event time, to the last one
    assert "\x1b[" not in stdout

    plain = piped(args, tmp_path)
    assert plain.returncode == 0
    assert plain.stderr == ""

    def without_timings(text: str) -> list[str]:  # wall and CPU seconds differ run to run
        return [line.split(" alerts (")[0] for line in text.splitlines()]

    assert without_timings(plain.stdout) == without_timings(stdout)
