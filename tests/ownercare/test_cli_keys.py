"""`ownercare keys` and `ownercare ota keygen`: real files and a real SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest

from ota.manifest import load_private_key, load_public_key, offer_manifest, sign, verify
from ota.model import Release
from ownercare.cli import main
from storage.keys import KeyStore
from storage.store import Store


def test_keys_create_list_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OWNERCARE_STATE_DIR", str(tmp_path))
    assert main(["keys", "create", "--role", "agent", "--name", "desk 7"]) == 0
    key = capsys.readouterr().out.strip()
    store = Store(f"sqlite:///{tmp_path / 'ownercare.db'}")
    principal = KeyStore(store).authenticate(key)
    assert principal is not None
    assert (principal.name, principal.role) == ("desk 7", "agent")
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert principal.key_id in listed
    assert "active" in listed
    assert key not in listed
    assert main(["keys", "revoke", principal.key_id]) == 0
    assert KeyStore(store).authenticate(key) is None
    assert main(["keys", "revoke", "nope"]) == 1
    assert "no API key with id 'nope'" in capsys.readouterr().err
    assert main(["keys", "create", "--role", "agent", "--name", "bad/name"]) == 2
    assert "--name" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["keys", "create", "--role", "root", "--name", "x"])
    assert exit_info.value.code == 2


def test_ota_keygen_writes_a_working_pair_and_never_overwrites_silently(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "keys"
    assert main(["ota", "keygen", "--out", str(out)]) == 0
    private_pem = (out / "ota-signing.pem").read_bytes()
    assert (out / "ota-signing.pem").stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE" not in capsys.readouterr().out.encode()  # the key itself is not printed
    release = Release("1.1.0", "tcu", "https://u.example.com/a", 1, "0" * 64)
    manifest = offer_manifest(release, vin="WCRAAAAAAAAAAAAA1", campaign_id="c", attempt=1,
                              issued_at=0, ttl_ms=10)
    command = sign(load_private_key(private_pem), manifest)
    public = load_public_key((out / "ota-signing.pub.pem").read_bytes())
    assert verify(public, command, vin="WCRAAAAAAAAAAAAA1", installed_version="1.0.0",
                  now=5).release == release
    assert main(["ota", "keygen", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "ota-signing.pem").read_bytes() == private_pem
    assert main(["ota", "keygen", "--out", str(out), "--force"]) == 0
    assert (out / "ota-signing.pem").read_bytes() != private_pem
