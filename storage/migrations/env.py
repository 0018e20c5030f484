"""Alembic environment: ``Store`` runs the migrations on a connection it already holds.

The connection arrives in ``config.attributes["connection"]``, inside the store's schema
lock (SQLite ``BEGIN IMMEDIATE`` / a PostgreSQL advisory lock), so a worker and an API that
open a fresh database at the same moment migrate it once, one after the other.
"""

from __future__ import annotations

from alembic import context

from storage.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("ownercare migrations run through storage.store.Store (it opens the "
                       "database and holds the schema lock); there is no offline mode")
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
