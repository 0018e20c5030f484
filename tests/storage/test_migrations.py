"""Alembic migrations: they build exactly the schema the code declares, upgrade a database
made before migrations existed without losing data, and step down and up again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select

from storage import migrate as store_module
from storage.migrate import BASELINE_REVISION
from storage.models import alerts, metadata
from storage.store import Store
from tests.storage.test_store import alert

BASELINE_TABLES = ("alerts", "alert_events", "assets", "latest_signals")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrate.sqlite'}"
    return str(request.getfixturevalue("postgres").new_database())


def schema_diff(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def revision(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_migrations_build_exactly_the_declared_schema(url: str) -> None:
    store = Store(url)
    assert schema_diff(store) == []
    assert revision(store) == store_module._alembic()[1]
    with store.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == set(metadata.tables) | {
            "alembic_version"}
    store.close()


def test_a_database_from_before_migrations_is_stamped_and_upgraded(url: str) -> None:
    # What the pre-migration code left: the baseline tables with data, and no revision.
    config, _head = store_module._alembic()
    raw = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with raw.begin() as conn:
        config.attributes["connection"] = conn
        try:
            command.upgrade(config, BASELINE_REVISION)
        finally:
            config.attributes.pop("connection", None)
        conn.exec_driver_sql("DROP TABLE alembic_version")
        assert set(inspect(conn).get_table_names()) == set(BASELINE_TABLES)
        conn.execute(alerts.insert().values(**alert(id="kept")))
    raw.dispose()

    store = Store(url)
    assert revision(store) == store_module._alembic()[1]
    assert schema_diff(store) == []
    assert store.get_alert("kept") is not None  # the data survived
    store.close()


def test_every_migration_steps_down_and_up_again(url: str) -> None:
    store = Store(url)
    store.upsert_alert(alert(id="a"))
    config, head = store_module._alembic()
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        try:
            command.downgrade(config, BASELINE_REVISION)
            assert MigrationContext.configure(conn).get_current_revision() == BASELINE_REVISION
            assert not inspect(conn).has_table("api_keys")
            command.downgrade(config, "base")
            assert not inspect(conn).has_table("alerts")
            command.upgrade(config, "head")
            assert MigrationContext.configure(conn).get_current_revision() == head
        finally:
            config.attributes.pop("connection", None)
    assert schema_diff(store) == []
    with store.engine.connect() as conn:
        assert conn.execute(select(alerts)).first() is None  # base dropped everything
    store.close()
