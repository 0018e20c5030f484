"""Per-charge-point passwords of the OCPP gateway (OCPP 1.6 security profile 1: HTTP Basic).

The credentials file has one ``charger_id:hash`` line per charge point (``#`` comments and
blank lines allowed), like an htpasswd file. Only scrypt hashes are stored, each with its own
salt and cost, so the file is not a list of passwords and the cost can rise later without
invalidating older lines. ``ownercare ocpp add-charger`` writes it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Final

from ingest.contract import CHARGER_ID_RE

SCHEME: Final = "scrypt"
N, R, P = 1 << 14, 8, 1  # 16 MiB and ~50 ms per check: cheap for a handshake, dear to guess
DKLEN: Final = 32
MAX_COST: Final = 1 << 20  # a hand-edited line must not make each handshake cost gigabytes


class CredentialsError(ValueError):
    """A credentials file or line that cannot be used; str() says where and why."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=DKLEN)
    return f"{SCHEME}${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise CredentialsError(f"not a {SCHEME}$N$r$p$salt$hash password hash")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, digest = base64.b64decode(parts[4], validate=True), base64.b64decode(
            parts[5], validate=True)
    except ValueError:
        raise CredentialsError("the password hash has a bad number or base64 field") from None
    if not (2 <= n <= MAX_COST and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16
            and salt and len(digest) >= 16):
        raise CredentialsError("the password hash's scrypt parameters are out of range")
    return n, r, p, salt, digest


def verify(stored: str, password: str) -> bool:
    """True when ``password`` matches the stored hash (constant-time comparison)."""
    n, r, p, salt, digest = _parse(stored)
    candidate = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(digest),
                               maxmem=256 * n * r * p)
    return hmac.compare_digest(candidate, digest)


def parse(text: str, where: str = "credentials") -> dict[str, str]:
    """Charger id -> stored hash, from the text of a credentials file."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        charger_id, sep, stored = line.partition(":")
        if not sep or not CHARGER_ID_RE.fullmatch(charger_id):
            raise CredentialsError(f"{where} line {number}: expected charger_id:hash with a "
                                   "charger id of [A-Za-z0-9._-]{1,48}")
        try:
            _parse(stored)
        except CredentialsError as exc:
            raise CredentialsError(f"{where} line {number}: {exc}") from None
        if charger_id in out:
            raise CredentialsError(f"{where} line {number}: {charger_id} is listed twice")
        out[charger_id] = stored
    return out


def load(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse(text, str(path))


def add(path: Path, charger_id: str, password: str | None = None) -> str:
    """Add or replace ``charger_id`` in the file (created 0600); return the password."""
    if not CHARGER_ID_RE.fullmatch(charger_id):
        raise CredentialsError(f"{charger_id!r} is not a charger id [A-Za-z0-9._-]{{1,48}}")
    password = password if password is not None else secrets.token_urlsafe(24)
    existing = load(path) if path.exists() else {}
    existing[charger_id] = hash_password(password)
    lines = "".join(f"{cid}:{stored}\n" for cid, stored in sorted(existing.items()))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# ownercare OCPP charge points: charger_id:scrypt hash\n" + lines)
    return password
