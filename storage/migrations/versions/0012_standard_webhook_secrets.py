"""Webhook secrets in the Standard Webhooks form: ``whsec_`` and the base64 of the key bytes.

A secret used to be ``whsec_<random>``, the whole string being the HMAC key. The key is
kept: the secret becomes ``whsec_`` + base64(the old secret's UTF-8 bytes), so a receiver
derives its new secret from the one it holds, without a new exchange. Downgrading decodes
those back; a secret created since stays as it is, which the old scheme (any string is a
key) signs with just as well.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import base64
import binascii

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

PREFIX = "whsec_"
_webhooks = sa.table("webhooks", sa.column("id"), sa.column("secret"))


def upgrade() -> None:
    conn = op.get_bind()
    for webhook_id, secret in conn.execute(sa.select(_webhooks.c.id, _webhooks.c.secret)).all():
        if _key(secret) is None:
            new = PREFIX + base64.b64encode(secret.encode()).decode()
            conn.execute(sa.update(_webhooks).where(_webhooks.c.id == webhook_id)
                         .values(secret=new))


def downgrade() -> None:
    conn = op.get_bind()
    for webhook_id, secret in conn.execute(sa.select(_webhooks.c.id, _webhooks.c.secret)).all():
        key = _key(secret)
        if key is None or not key.startswith(PREFIX.encode()):
            continue
        try:
            old = key.decode()
        except UnicodeDecodeError:
            continue
        conn.execute(sa.update(_webhooks).where(_webhooks.c.id == webhook_id)
                     .values(secret=old))


def _key(secret: str) -> bytes | None:
    """The key bytes of a Standard Webhooks secret; None for an old-style one (its random
    part is URL-safe base64 of a length standard base64 refuses)."""
    if not secret.startswith(PREFIX):
        return None
    try:
        return base64.b64decode(secret[len(PREFIX):], validate=True) or None
    except binascii.Error:
        return None
