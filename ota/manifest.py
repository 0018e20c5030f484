"""Signed update manifests (after Uptane / TUF): what a vehicle checks before installing.

The cloud signs, per offer, a canonical JSON manifest with ed25519: the release (version,
component, artifact URL, size, SHA-256), the vehicle it is for, when it was issued and when it
expires. The vehicle holds the public key (pinned at manufacture) and refuses:

* a bad signature, or a manifest for another vehicle (a replayed command);
* an expired manifest (a freeze attack: an attacker holding back a fresh offer and replaying
  an old one);
* a version lower than or equal to the installed one (a rollback attack), unless the manifest
  itself says it is a signed rollback release;
* an artifact whose size or SHA-256 differs from the manifest.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ota.model import Release, parse_version


class ManifestRejected(ValueError):
    """Why a vehicle refuses a command; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def canonical(value: Any) -> bytes:
    """The bytes that are signed: JSON with sorted keys and no whitespace."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def generate_keypair() -> tuple[bytes, bytes]:
    """A new ed25519 key pair as (private PEM, public PEM)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_pem, public_pem


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the OTA signing key must be an ed25519 private key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the OTA verification key must be an ed25519 public key")
    return key


def offer_manifest(release: Release, *, vin: str, campaign_id: str, attempt: int,
                   issued_at: int, ttl_ms: int) -> dict[str, Any]:
    return {"type": "ota.offer", "vin": vin, "campaign_id": campaign_id, "attempt": attempt,
            "issued_at": issued_at, "expires_at": issued_at + ttl_ms,
            "release": release.as_dict()}


def sign(private_key: Ed25519PrivateKey, manifest: dict[str, Any]) -> dict[str, Any]:
    """The command a vehicle receives: the manifest and its signature."""
    signature = private_key.sign(canonical(manifest))
    return {"manifest": manifest, "signature": base64.b64encode(signature).decode()}


@dataclass(frozen=True, slots=True)
class Accepted:
    release: Release
    expires_at: int


def verify(public_key: Ed25519PublicKey, command: Any, *, vin: str, installed_version: str,
           now: int) -> Accepted:
    """What the vehicle checks on receiving an offer; raises ManifestRejected."""
    if not isinstance(command, dict) or not isinstance(command.get("manifest"), dict) \
            or not isinstance(command.get("signature"), str):
        raise ManifestRejected("malformed", "a command is {manifest: {...}, signature: str}")
    manifest = command["manifest"]
    try:
        signed = canonical(manifest)
    except TypeError as exc:  # e.g. an integer beyond 64 bits: never something we signed
        raise ManifestRejected("malformed", f"manifest is not canonical JSON: {exc}") from None
    try:
        signature = base64.b64decode(command["signature"], validate=True)
        public_key.verify(signature, signed)
    except (InvalidSignature, ValueError):
        raise ManifestRejected("bad_signature", "the manifest is not signed by the pinned "
                               "key (or was changed after signing)") from None
    if manifest.get("vin") != vin:
        raise ManifestRejected("wrong_vehicle", f"the manifest is for {manifest.get('vin')!r}")
    expires_at = manifest.get("expires_at")
    if not isinstance(expires_at, int) or now > expires_at:
        raise ManifestRejected("expired", f"the manifest expired at {expires_at}; now {now}")
    try:
        release = Release(**manifest["release"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ManifestRejected("malformed", f"release: {exc}") from None
    if parse_version(release.version) <= parse_version(installed_version) \
            and not release.rollback:
        raise ManifestRejected("not_newer", f"{release.version} is not newer than the "
                               f"installed {installed_version}")
    return Accepted(release, expires_at)


def check_artifact(release: Release, artifact: bytes) -> None:
    """After download: the bytes must be exactly what the signed manifest describes."""
    if len(artifact) != release.size:
        raise ManifestRejected("bad_artifact", f"{len(artifact)} bytes, the manifest says "
                               f"{release.size}")
    if hashlib.sha256(artifact).hexdigest() != release.sha256:
        raise ManifestRejected("bad_artifact", "SHA-256 differs from the manifest")
