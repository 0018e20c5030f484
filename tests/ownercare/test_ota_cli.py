"""`ownercare ota release`: real SQLite databases, the simulated car's own artifact check."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ota.manifest import check_artifact
from ownercare.cli import build_parser, main
from simulators.ota_client import ArtifactStore
from storage import ota as ota_store
from storage.store import Store


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("OWNERCARE_DATABASE_URL", raising=False)
    monkeypatch.setenv("OWNERCARE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def stored(state: Path, release_id: str) -> ota_store.Release:
    store = Store(f"sqlite:///{state / 'ownercare.db'}")
    try:
        row = ota_store.get_release(store, release_id)
    finally:
        store.close()
    assert row is not None
    return ota_store.release_of(row)


def test_a_simulated_release_passes_the_simulated_car_s_download_check(
        state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ota", "release", "--simulated", "--component", "bms", "--version", "2.0.0",
                 "--notes", "fixes cell balancing"]) == 0
    out, err = capsys.readouterr()
    release = stored(state, out.strip())
    assert (release.component, release.version, release.notes) == (
        "bms", "2.0.0", "fixes cell balancing")
    assert release.artifact_url == "https://cdn.example/bms-2.0.0.bin"
    check_artifact(release, ArtifactStore().fetch(release))  # what the car does; raises if bad
    assert f"created release {out.strip()}: bms 2.0.0" in err


def test_a_release_from_a_file_promises_that_file(
        state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    artifact = tmp_path / "bms-3.1.0.bin"
    artifact.write_bytes(b"\x7fELF" + bytes(range(256)) * 40)
    assert main(["ota", "release", "--component", "bms", "--version", "3.1.0", "--url",
                 "https://updates.example.com/bms-3.1.0.bin", "--file", str(artifact)]) == 0
    release = stored(state, capsys.readouterr().out.strip())
    assert release.size == artifact.stat().st_size
    assert release.sha256 == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert not release.rollback


def test_a_release_published_elsewhere_and_a_rollback(
        state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ota", "release", "--component", "tcu", "--version", "1.0.0", "--url",
                 "https://updates.example.com/tcu.bin", "--sha256", "ab" * 32, "--size", "10",
                 "--rollback"]) == 0
    out, err = capsys.readouterr()
    release = stored(state, out.strip())
    assert (release.sha256, release.size, release.rollback) == ("ab" * 32, 10, True)
    assert err.splitlines()[-1] == (
        f"a rollback release: an admin key must approve it (POST /ota/releases/{out.strip()}"
        "/approve) before a campaign may use it")


def test_the_same_version_twice_is_refused(state: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["ota", "release", "--simulated", "--component", "bms", "--version", "2.0.0"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "ownercare ota release: release bms 2.0.0 exists\n"


@pytest.mark.parametrize(("argv", "says"), [
    (["--simulated", "--version", "2.0"], "'2.0' is not a semantic version"),
    (["--simulated", "--version", "2.0.0", "--sha256", "ab" * 32], "leave out --file and"),
    (["--version", "2.0.0"], "--url is required"),
    (["--version", "2.0.0", "--url", "https://x.example/a"], "describe the artifact"),
    (["--version", "2.0.0", "--url", "ftp://x.example/a", "--sha256", "ab" * 32, "--size", "1"],
     "--url: "),
    (["--version", "2.0.0", "--url", "https://x.example/a", "--sha256", "AB" * 32, "--size",
      "1"], "--sha256: "),
    (["--version", "2.0.0", "--url", "https://x.example/a", "--sha256", "ab" * 32, "--size",
      "0"], "--size: "),
    (["--version", "2.0.0", "--url", "https://x.example/a", "--sha256", "ab" * 32, "--size",
      "1k"], "--size: '1k' is not a whole number"),
    (["--version", "2.0.0", "--url", "https://x.example/a", "--file", "/no/such/file"],
     "--file /no/such/file: No such file"),
    (["--version", "2.0.0", "--simulated", "--component", "no spaces"], "--component: "),
    (["--version", "2.0.0", "--simulated", "--size", "0"], "--size: a simulated artifact has"),
    (["--version", "2.0.0", "--simulated", "--size", str(1 << 30)], "--size: a simulated"),
    (["--simulated", "--component", "bms"], "required: --version"),
])
def test_a_mistake_is_one_line_and_exit_status_2(
        state: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    full = ["ota", "release", *argv]
    if "--component" not in argv:
        full += ["--component", "bms"]
    if says.startswith("required"):  # argparse's own check
        with pytest.raises(SystemExit) as exited:
            main(full)
        assert exited.value.code == 2
    else:
        assert main(full) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("ownercare ota release: ")
    assert says in err, err
    assert not (state / "ownercare.db").exists() or not _releases(state)


def _releases(state: Path) -> list[object]:
    store = Store(f"sqlite:///{state / 'ownercare.db'}")
    try:
        return list(ota_store.list_releases(store)[0])
    finally:
        store.close()


def test_run_help_says_where_the_cars_key_comes_from(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "ignores OTA commands" not in text
    assert "--ota-public-key FILE PEM Ed25519 public key the cars pin" in text
    assert ("it must be the public half of the key the worker signs with (default: that "
            "half, of OWNERCARE_OTA_SIGNING_KEY if set, else of the demo key pair in the "
            "state dir, keys/ota-signing.pub.pem)") in text
