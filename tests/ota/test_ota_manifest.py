"""Signed OTA manifests: what the vehicle refuses (tampering, another car's command, expiry,
rollback, a wrong artifact) and what it accepts."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ota.manifest import (
    ManifestRejected,
    check_artifact,
    generate_keypair,
    load_private_key,
    load_public_key,
    offer_manifest,
    sign,
    verify,
)
from ota.model import Release

ARTIFACT = b"firmware image " * 100
RELEASE = Release("2.1.0", "bms", "https://updates.example.com/bms.bin", len(ARTIFACT),
                  hashlib.sha256(ARTIFACT).hexdigest())
VIN = "WCRAAAAAAAAAAAAA1"
NOW = 1_760_000_000_000
PRIVATE_PEM, PUBLIC_PEM = generate_keypair()
PRIVATE, PUBLIC = load_private_key(PRIVATE_PEM), load_public_key(PUBLIC_PEM)


def command(release: Release = RELEASE, vin: str = VIN) -> dict[str, Any]:
    return sign(PRIVATE, offer_manifest(release, vin=vin, campaign_id="c1", attempt=1,
                                        issued_at=NOW, ttl_ms=3_600_000))


def rejected(cmd: Any, installed: str = "2.0.0", now: int = NOW, vin: str = VIN) -> str:
    with pytest.raises(ManifestRejected) as info:
        verify(PUBLIC, cmd, vin=vin, installed_version=installed, now=now)
    return info.value.reason


def test_a_fresh_signed_offer_for_this_car_is_accepted() -> None:
    accepted = verify(PUBLIC, command(), vin=VIN, installed_version="2.0.0", now=NOW + 1000)
    assert accepted.release == RELEASE
    check_artifact(accepted.release, ARTIFACT)


@given(st.sampled_from(["vin", "expires_at", "campaign_id", "release.version",
                        "release.sha256", "release.artifact_url", "release.rollback",
                        "release.size"]), st.data())
def test_any_tampered_field_breaks_the_signature(path: str, data: st.DataObject) -> None:
    cmd = copy.deepcopy(command())
    target = cmd["manifest"]
    *parents, leaf = path.split(".")
    for parent in parents:
        target = target[parent]
    old = target[leaf]
    new = data.draw(st.from_type(type(old)).filter(lambda v: v != old))
    target[leaf] = new
    assert rejected(cmd) in ("bad_signature", "malformed")


def test_another_key_a_garbled_signature_and_junk_are_refused() -> None:
    other_private = load_private_key(generate_keypair()[0])
    forged = sign(other_private, command()["manifest"])
    assert rejected(forged) == "bad_signature"
    assert rejected({**command(), "signature": "not base64!"}) == "bad_signature"
    assert rejected({"manifest": "x"}) == "malformed"
    assert rejected([]) == "malformed"


def test_a_command_for_another_car_is_refused() -> None:
    assert rejected(command(vin="WCRAAAAAAAAAAAAA2")) == "wrong_vehicle"


def test_an_expired_manifest_is_refused_freeze_attack() -> None:
    assert rejected(command(), now=NOW + 3_600_001) == "expired"


@pytest.mark.parametrize("installed", ["2.1.0", "2.2.0", "10.0.0"])
def test_same_or_older_versions_are_refused_rollback_attack(installed: str) -> None:
    assert rejected(command(), installed=installed) == "not_newer"


def test_an_explicitly_signed_rollback_release_is_accepted() -> None:
    back = Release("1.9.0", "bms", RELEASE.artifact_url, RELEASE.size, RELEASE.sha256,
                   rollback=True)
    assert verify(PUBLIC, command(back), vin=VIN, installed_version="2.1.0",
                  now=NOW).release.rollback


def test_an_artifact_that_is_not_the_signed_one_is_refused() -> None:
    with pytest.raises(ManifestRejected, match="bad_artifact"):
        check_artifact(RELEASE, ARTIFACT + b"!")
    with pytest.raises(ManifestRejected, match="SHA-256"):
        check_artifact(RELEASE, ARTIFACT[:-1] + b"?")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("version", "2.1", "semantic version"), ("sha256", "ABC", "sha256"),
    ("size", 0, "size"), ("artifact_url", "ftp://x", "artifact_url"),
    ("component", "", "component")])
def test_bad_releases_are_refused_with_the_field_named(field: str, value: Any,
                                                       message: str) -> None:
    fields = RELEASE.as_dict() | {field: value}
    with pytest.raises(ValueError, match=message):
        Release(**fields)
