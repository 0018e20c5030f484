"""The Alembic runner: every service brings the schema to the newest revision when it opens
the database (the revisions are in ``storage/migrations``)."""

from __future__ import annotations

import functools
import logging
from typing import Any

from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

BASELINE_REVISION = "0001"


@functools.cache
def _alembic() -> tuple[Any, str]:
    """Alembic's config for ``storage/migrations`` and the head revision (read once)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", "storage:migrations")
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return config, head


def migrate(conn: Connection) -> str | None:
    """Bring the schema to the newest revision; return the revision it had before.

    A database made before migrations existed has the baseline tables and no revision: it
    is stamped at the baseline, then upgraded like any other.
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import inspect

    config, head = _alembic()
    before = MigrationContext.configure(conn).get_current_revision()
    if before == head:
        return before
    config.attributes["connection"] = conn
    try:
        if before is None and inspect(conn).has_table("alerts"):
            command.stamp(config, BASELINE_REVISION)
            log.info("schema_stamped revision=%s reason=created before migrations existed",
                     BASELINE_REVISION)
        command.upgrade(config, "head")
    finally:
        config.attributes.pop("connection", None)
    log.info("schema_migrated from=%s to=%s", before, head)
    return before
