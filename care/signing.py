"""Signed cloud -> car envelopes (ed25519): what OTA manifests and remote commands share.

The cloud signs the canonical JSON of a body (sorted keys, no whitespace) with its private
key; the car holds the public key, pinned at manufacture, and checks the signature over the
exact bytes it re-derives from the body it received. An envelope is
``{<field>: {...body...}, "signature": "<base64 ed25519>"}``; OTA uses ``manifest`` as the
field, remote commands ``command``. Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SignatureRejected(ValueError):
    """Why a car refuses an envelope before looking inside; ``reason`` is a stable code
    (``malformed`` or ``bad_signature``)."""

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


def sign(private_key: Ed25519PrivateKey, body: dict[str, Any], field: str) -> dict[str, Any]:
    """The envelope a car receives: ``body`` under ``field`` and its signature."""
    signature = private_key.sign(canonical(body))
    return {field: body, "signature": base64.b64encode(signature).decode()}


def open_envelope(public_key: Ed25519PublicKey, envelope: Any, field: str) -> dict[str, Any]:
    """The signed body of ``envelope``, or SignatureRejected. Checks only the shape and the
    signature: what the body must say (vehicle, expiry, ...) is the caller's business."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get(field), dict) \
            or not isinstance(envelope.get("signature"), str):
        raise SignatureRejected("malformed", f"an envelope is {{{field}: {{...}}, "
                                "signature: str}")
    body: dict[str, Any] = envelope[field]
    try:
        signed = canonical(body)
    except TypeError as exc:  # e.g. an integer beyond 64 bits: never something we signed
        raise SignatureRejected("malformed", f"{field} is not canonical JSON: {exc}") from None
    try:
        signature = base64.b64decode(envelope["signature"], validate=True)
        public_key.verify(signature, signed)
    except (InvalidSignature, ValueError):
        raise SignatureRejected("bad_signature", f"the {field} is not signed by the pinned "
                                "key (or was changed after signing)") from None
    return body
