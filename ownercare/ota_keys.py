"""Which OTA key ``ownercare run`` signs with, and which public key its simulated cars pin.

* ``OWNERCARE_OTA_SIGNING_KEY`` set: the worker signs with that key, and the cars pin its
  public half (written next to the state dir's keys, ``keys/ota-configured.pub.pem``);
* not set: the demo pair in the state dir (``keys/ota-signing.pem``), made on first use and
  kept, so a resumed run signs with the key its cars pinned;
* ``--ota-public-key`` given: the cars pin that file instead, and it must be the public half
  of the signing key. A mismatch would make every car refuse every offer ``bad_signature``,
  so ``ownercare run`` refuses to start and names both keys' fingerprints.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ota.manifest import generate_keypair, load_private_key, load_public_key

log = logging.getLogger(__name__)


class OtaKeyError(ValueError):
    """The OTA keys cannot work together; the message is the one line printed."""


@dataclass(frozen=True, slots=True)
class RunKeys:
    signing: Path  # OWNERCARE_OTA_SIGNING_KEY of the worker
    public: Path  # --ota-public-key of the simulator
    fingerprint: str  # of the signing key's public half


def demo_paths(state_dir: Path) -> tuple[Path, Path]:
    """The state dir's demo pair: (private, public)."""
    return state_dir / "keys" / "ota-signing.pem", state_dir / "keys" / "ota-signing.pub.pem"


def resolve(state_dir: Path, configured: str, pinned: Path | None) -> RunKeys:
    """The keys of a run (module docstring); raises ``OtaKeyError``. Writes the demo pair or
    the configured key's public half under ``state_dir/keys`` when needed."""
    if configured:
        signing = Path(configured)
        public_key = check_configured(configured, pinned)
        public = pinned or _write_public(state_dir / "keys" / "ota-configured.pub.pem",
                                         public_key)
    else:
        signing, public = demo_paths(state_dir)
        _ensure_demo_pair(signing, public)
        public_key = _public_half(signing, "the demo key")
        if pinned is not None:
            _check_pinned(pinned, public_key, f"the demo signing key {signing} "
                          "(OWNERCARE_OTA_SIGNING_KEY is not set)")
        public = pinned or public
    return RunKeys(signing, public, fingerprint(public_key))


def check_configured(configured: str, pinned: Path | None) -> Ed25519PublicKey:
    """The public half of OWNERCARE_OTA_SIGNING_KEY, checked against ``pinned`` (if given)
    without writing anything: what a run can refuse before it touches its state dir."""
    public_key = _public_half(Path(configured), "OWNERCARE_OTA_SIGNING_KEY")
    if pinned is not None:
        _check_pinned(pinned, public_key, f"OWNERCARE_OTA_SIGNING_KEY {configured}")
    return public_key


def _check_pinned(pinned: Path, public_key: Ed25519PublicKey, source: str) -> None:
    pinned_key = _read_public(pinned)
    if _raw(pinned_key) != _raw(public_key):
        raise OtaKeyError(
            f"--ota-public-key {pinned} (fingerprint {fingerprint(pinned_key)}) does not "
            f"match {source} (fingerprint {fingerprint(public_key)}): every car would refuse "
            "every offer bad_signature; pin the signing key's public half, or leave "
            "--ota-public-key out")


def _public_half(path: Path, what: str) -> Ed25519PublicKey:
    try:
        return load_private_key(path.read_bytes()).public_key()
    except OSError as exc:
        raise OtaKeyError(f"{what} {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OtaKeyError(f"{what} {path}: not an ed25519 private key in PEM ({reason})"
                          ) from None


def _read_public(path: Path) -> Ed25519PublicKey:
    try:
        return load_public_key(path.read_bytes())
    except OSError as exc:
        raise OtaKeyError(f"--ota-public-key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OtaKeyError(f"--ota-public-key {path}: not an ed25519 public key in PEM "
                          f"({reason})") from None


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """A short name for a key, as OpenSSH prints one: ``SHA256:`` and the unpadded base64 of
    the SHA-256 of its 32 raw bytes."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(_raw(public_key)).digest()).decode(
    ).rstrip("=")


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _write_public(path: Path, key: Ed25519PublicKey) -> Path:
    pem = key.public_bytes(serialization.Encoding.PEM,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != pem:
        path.write_bytes(pem)
    return path


def _ensure_demo_pair(private_path: Path, public_path: Path) -> None:
    if private_path.exists():
        return
    private_pem, public_pem = generate_keypair()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_pem)
    public_path.write_bytes(public_pem)
    log.info("ota_keys_created private=%s public=%s", private_path, public_path)
