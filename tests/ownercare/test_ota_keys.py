"""Which OTA key `ownercare run` signs with and which its cars pin (``ownercare.ota_keys``):
real key files, no processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ota.manifest import generate_keypair, load_private_key, load_public_key
from ownercare.ota_keys import OtaKeyError, check_configured, fingerprint, resolve


def pair(directory: Path, name: str) -> tuple[Path, Path]:
    private_pem, public_pem = generate_keypair()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.pem").write_bytes(private_pem)
    (directory / f"{name}.pub.pem").write_bytes(public_pem)
    return directory / f"{name}.pem", directory / f"{name}.pub.pem"


def same_key(private: Path, public: Path) -> bool:
    return fingerprint(load_private_key(private.read_bytes()).public_key()) == \
        fingerprint(load_public_key(public.read_bytes()))


def test_a_configured_key_signs_and_the_cars_pin_its_public_half(tmp_path: Path) -> None:
    signing, _public = pair(tmp_path / "secrets", "ota")
    keys = resolve(tmp_path / "state", str(signing), None)
    assert keys.signing == signing
    assert keys.public == tmp_path / "state" / "keys" / "ota-configured.pub.pem"
    assert same_key(signing, keys.public)
    assert not (tmp_path / "state" / "keys" / "ota-signing.pem").exists()  # no demo key
    assert keys.fingerprint.startswith("SHA256:")
    assert len(keys.fingerprint) == 7 + 43  # 32 bytes of SHA-256, unpadded base64


def test_a_matching_public_key_is_pinned_as_given(tmp_path: Path) -> None:
    signing, public = pair(tmp_path / "secrets", "ota")
    keys = resolve(tmp_path / "state", str(signing), public)
    assert (keys.signing, keys.public) == (signing, public)


def test_a_public_key_of_another_pair_is_refused_naming_both_fingerprints(
        tmp_path: Path) -> None:
    signing, _ = pair(tmp_path / "secrets", "ota")
    _, other = pair(tmp_path / "secrets", "other")
    want = fingerprint(load_private_key(signing.read_bytes()).public_key())
    got = fingerprint(load_public_key(other.read_bytes()))
    with pytest.raises(OtaKeyError) as refused:
        check_configured(str(signing), other)
    message = str(refused.value)
    assert message == (
        f"--ota-public-key {other} (fingerprint {got}) does not match "
        f"OWNERCARE_OTA_SIGNING_KEY {signing} (fingerprint {want}): every car would refuse "
        "every offer bad_signature; pin the signing key's public half, or leave "
        "--ota-public-key out")
    assert "\n" not in message
    with pytest.raises(OtaKeyError, match="does not match OWNERCARE_OTA_SIGNING_KEY"):
        resolve(tmp_path / "state", str(signing), other)
    assert not (tmp_path / "state").exists()  # refused before writing anything


def test_without_a_configured_key_the_demo_pair_is_made_once_and_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = resolve(state, "", None)
    assert first.signing == state / "keys" / "ota-signing.pem"
    assert first.public == state / "keys" / "ota-signing.pub.pem"
    assert same_key(first.signing, first.public)
    assert os.stat(first.signing).st_mode & 0o077 == 0
    assert resolve(state, "", None) == first  # resumed: the key the cars pinned
    assert resolve(state, "", first.public).public == first.public
    _, other = pair(tmp_path / "secrets", "other")
    with pytest.raises(OtaKeyError, match=r"does not match the demo signing key .* "
                       r"\(OWNERCARE_OTA_SIGNING_KEY is not set\)"):
        resolve(state, "", other)


@pytest.mark.parametrize(("content", "reason"), [
    (b"not a key", "not an ed25519 private key in PEM"),
    (None, "No such file or directory"),
])
def test_an_unusable_signing_key_is_one_line(tmp_path: Path, content: bytes | None,
                                              reason: str) -> None:
    path = tmp_path / "key.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(OtaKeyError) as refused:
        check_configured(str(path), None)
    assert str(refused.value).startswith(f"OWNERCARE_OTA_SIGNING_KEY {path}: {reason}")
    assert "\n" not in str(refused.value)


def test_a_pinned_file_that_is_no_public_key_is_one_line(tmp_path: Path) -> None:
    signing, _ = pair(tmp_path, "ota")
    with pytest.raises(OtaKeyError, match=r"^--ota-public-key .*: not an ed25519 public key"):
        check_configured(str(signing), signing)  # the private half is no public key
