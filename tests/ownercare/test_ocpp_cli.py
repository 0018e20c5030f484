"""``ownercare ocpp`` and the OCPP flags of ``ownercare simulate`` / ``ownercare run``: a
mistake is one line on stderr and exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest import ocpp_credentials
from ownercare.cli import main


@pytest.fixture(autouse=True)
def _no_ocpp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OWNERCARE_OCPP_CREDENTIALS_FILE", "OWNERCARE_OCPP_ENABLED"):
        monkeypatch.delenv(name, raising=False)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_the_gateway_needs_a_credentials_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ocpp"]) == 2
    assert one_line(capsys.readouterr().err).startswith(
        "ownercare ocpp: OWNERCARE_OCPP_CREDENTIALS_FILE is not set")


def test_a_bad_credentials_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "creds"
    path.write_text("CP-1:hunter2\n")
    monkeypatch.setenv("OWNERCARE_OCPP_CREDENTIALS_FILE", str(path))
    assert main(["ocpp"]) == 2
    assert one_line(capsys.readouterr().err) == (
        f"ownercare ocpp: {path} line 1: not a scrypt$N$r$p$salt$hash password hash")


def test_add_charger_prints_the_password_once_and_stores_its_hash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "creds"
    assert main(["ocpp", "add-charger", "CP-0042", "--credentials", str(path)]) == 0
    password = one_line(capsys.readouterr().out)
    assert len(password) >= 24
    assert ocpp_credentials.verify(ocpp_credentials.load(path)["CP-0042"], password)
    assert password not in path.read_text()


@pytest.mark.parametrize(("argv", "message"), [
    (["ocpp", "add-charger", "CP-1"], "ownercare ocpp add-charger: give --credentials FILE "
     "or set OWNERCARE_OCPP_CREDENTIALS_FILE"),
    (["ocpp", "add-charger", "CP 1", "--credentials", "{tmp}/c"],
     "ownercare ocpp add-charger: 'CP 1' is not a charger id [A-Za-z0-9._-]{1,48}"),
    (["simulate", "--vehicles", "0", "--chargers", "1", "--chargers-ocpp", "ws://h:1/ocpp"],
     "ownercare simulate: --chargers-ocpp needs --ocpp-passwords FILE"),
    (["simulate", "--chargers-ocpp", "http://h:1/ocpp", "--ocpp-passwords", "{tmp}/p"],
     "ownercare simulate: --chargers-ocpp 'http://h:1/ocpp' is not a ws:// or wss:// URL"),
    (["simulate", "--chargers-ocpp", "ws://h:1/ocpp", "--ocpp-passwords", "{tmp}/nowhere"],
     "ownercare simulate: cannot read {tmp}/nowhere: No such file or directory"),
    (["run", "--chargers-ocpp", "ws://h:1/ocpp"], "ownercare run: --chargers-ocpp does not "
     "apply: with --ocpp the simulated chargers connect to the run's own OCPP gateway; "
     "`ownercare simulate --chargers-ocpp` connects them to another one"),
])
def test_mistakes_are_one_line_and_status_2(argv: list[str], message: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    assert one_line(capsys.readouterr().err) == message.replace("{tmp}", str(tmp_path))


def test_config_ocpp_prints_its_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "ocpp"]) == 0
    out = capsys.readouterr().out
    assert "OWNERCARE_OCPP_PORT=9000" in out
    assert "OWNERCARE_OCPP_CLOCKLESS_RECORDS=True" in out
