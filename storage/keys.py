"""API keys: roles, key format, hashing, and their rows in the store.

A key reads ``oc_<id>_<secret>``: the id finds the row, the secret proves possession. Only
SHA-256 of the secret is stored, and the whole key is returned once, at creation. Times here
are wall clock (``*_wall_ms``: an operator created or revoked a key); detection never uses
them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from sqlalchemy import select, update

from storage.cursor import after, check_limit, decode_cursor, page
from storage.database import wall_ms
from storage.models import api_keys
from storage.store import Store

Role = Literal["viewer", "agent", "ota_manager", "admin"]
ROLES: Final[tuple[str, ...]] = get_args(Role)
Permission = Literal["read", "cases", "ota", "admin"]

# What each role may do. viewer reads; agent also works cases; ota_manager also runs OTA
# campaigns; admin does everything, including keys and webhooks.
GRANTS: Final[dict[str, frozenset[str]]] = {
    "viewer": frozenset({"read"}),
    "agent": frozenset({"read", "cases"}),
    "ota_manager": frozenset({"read", "ota"}),
    "admin": frozenset({"read", "cases", "ota", "admin"}),
}
KEY_SORT = "keys:created_wall_ms"
KEY_RE: Final = re.compile(r"oc_([a-z0-9]{12})_([A-Za-z0-9_-]{43})")
NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, its human-readable name (the audit "who") and role."""

    key_id: str
    name: str
    role: str

    def may(self, permission: str) -> bool:
        return permission in GRANTS.get(self.role, frozenset())


def roles_with(permission: str) -> list[str]:
    return [role for role in ROLES if permission in GRANTS[role]]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"key name {name!r} must be 1-64 characters: letters, digits, "
                         "space and . _ @ -, starting with a letter or digit")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


class KeyStore:
    """API key rows in the relational store (same database as alerts and cases)."""

    def __init__(self, store: Store, clock: Callable[[], int] = wall_ms) -> None:
        self.store = store
        self.clock = clock

    def create(self, name: str, role: str) -> tuple[dict[str, Any], str]:
        """A new key: its public row and the full key, which is never available again."""
        check_name(name)
        check_role(role)
        key_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                         for _ in range(12))
        secret = secrets.token_urlsafe(32)
        row = {"id": key_id, "name": name, "role": role, "secret_sha256": _digest(secret),
               "created_wall_ms": self.clock(), "revoked_wall_ms": None}
        with self.store.write() as conn:
            conn.execute(api_keys.insert().values(**row))
        return _public(row), f"oc_{key_id}_{secret}"

    def authenticate(self, key: str) -> Principal | None:
        """The principal of a valid, unrevoked key; None for anything else."""
        match = KEY_RE.fullmatch(key)
        if match is None:
            return None
        key_id, secret = match.groups()
        with self.store.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        # Compare digests in constant time, and do the same work for unknown ids.
        expected = row["secret_sha256"] if row else _digest("")
        if not hmac.compare_digest(expected, _digest(secret)) or row is None:
            return None
        if row["revoked_wall_ms"] is not None:
            return None
        return Principal(key_id=row["id"], name=row["name"], role=row["role"])

    def page(self, *, limit: int = 50, cursor: str | None = None
             ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of keys, oldest first, and the next page's cursor (ValueError for a
        cursor this store did not issue)."""
        check_limit(limit)
        order = (api_keys.c.created_wall_ms, api_keys.c.id)
        query = select(api_keys).order_by(*order).limit(limit + 1)
        if cursor:
            query = query.where(after(order, decode_cursor(cursor, KEY_SORT)))
        with self.store.engine.connect() as conn:
            rows = [_public(dict(r)) for r in conn.execute(query).mappings()]
        return page(rows, limit, lambda r: (r["created_wall_ms"], r["id"]), KEY_SORT)

    def get(self, key_id: str) -> dict[str, Any] | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        return _public(dict(row)) if row else None

    def list(self) -> list[dict[str, Any]]:
        """Every key, oldest first (the CLI's listing)."""
        rows, cursor = self.page(limit=2**31)
        assert cursor is None
        return rows

    def revoke(self, key_id: str) -> dict[str, Any] | None:
        """Revoke a key (idempotent); None when no such key exists."""
        with self.store.write() as conn:
            conn.execute(update(api_keys).where(api_keys.c.id == key_id,
                                                api_keys.c.revoked_wall_ms.is_(None))
                         .values(revoked_wall_ms=self.clock()))
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        return _public(dict(row)) if row else None


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "name", "role", "created_wall_ms", "revoked_wall_ms")}
