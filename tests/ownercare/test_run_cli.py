"""``ownercare run`` and the service commands refuse bad input with a clear message."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def ownercare(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ownercare", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = ownercare("run", "--api-port", str(port), "--state-dir", str(tmp_path),
                           cwd=tmp_path)
    assert result.returncode == 2
    assert f"port {port} for the API is already in use" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--faults", "weak_12v:1", "--api-port", "70000"], "outside 1..65535"),
    (["simulate", "--speed", "-5"], "must be > 0"),
    (["simulate", "--duration", "forever"], "is not a duration"),
    (["simulate", "--faults", "gremlins:2"], "unknown fault 'gremlins'"),
    (["run", "--vehicles", "2", "--faults", "weak_12v:3"], "only 2 vehicles"),
    (["bench", "--vehicles", "0"], "0 is outside 1..200000"),
    (["bench", "--rate", "fast"], "'fast' is not a number"),
    (["bench", "--duration", "2"], "2.0 is outside 5..86400"),
    (["bench", "--broker", "rabbitmq"], "invalid choice: 'rabbitmq'"),
])
def test_bad_arguments_are_explained(tmp_path: Path, args: list[str], message: str) -> None:
    result = ownercare(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


def test_config_masks_secrets(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ownercare", "config", "bridge"], capture_output=True, text=True,
        timeout=60, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "OWNERCARE_MQTT_URL": "mqtt://bridge:s3cret@broker:1883"})
    assert result.returncode == 0, result.stderr
    assert "OWNERCARE_MQTT_URL=mqtt://bridge:***@broker:1883" in result.stdout
    assert "s3cret" not in result.stdout
