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

import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# The envelope, its canonical bytes and the keys are shared with remote commands.
from care.signing import (
    SignatureRejected,
    canonical,
    generate_keypair,
    load_private_key,
    load_public_key,
    open_envelope,
)
from care.signing import sign as sign_envelope
from ota.model import Release, parse_version

__all__ = ["Accepted", "ManifestRejected", "canonical", "check_artifact", "generate_keypair",
           "load_private_key", "load_public_key", "offer_manifest", "sign", "verify"]


class ManifestRejected(ValueError):
    """Why a vehicle refuses a command; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def offer_manifest(release: Release, *, vin: str, campaign_id: str, attempt: int,
                   issued_at: int, ttl_ms: int) -> dict[str, Any]:
    return {"type": "ota.offer", "vin": vin, "campaign_id": campaign_id, "attempt": attempt,
            "issued_at": issued_at, "expires_at": issued_at + ttl_ms,
            "release": release.as_dict()}


def sign(private_key: Ed25519PrivateKey, manifest: dict[str, Any]) -> dict[str, Any]:
    """The command a vehicle receives: the manifest and its signature."""
    return sign_envelope(private_key, manifest, "manifest")


@dataclass(frozen=True, slots=True)
class Accepted:
    release: Release
    expires_at: int


def verify(public_key: Ed25519PublicKey, command: Any, *, vin: str, installed_version: str,
           now: int) -> Accepted:
    """What the vehicle checks on receiving an offer; raises ManifestRejected."""
    try:
        manifest = open_envelope(public_key, command, "manifest")
    except SignatureRejected as exc:
        raise ManifestRejected(exc.reason, str(exc).partition(": ")[2]) from None
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
