"""Alembic migrations of the relational schema (applied by ``Store`` when it opens)."""
