"""The migrations are the schema: up from empty, down to base, up again, and no drift from the models."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect

from app.db import migrate
from app.db.base import Base
from tests.conftest import create_database, drop_database


@pytest.fixture
def empty_pg_url():
    url = create_database("t2if_mig")
    yield url
    drop_database(url)


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_round_trip_on_postgres(empty_pg_url: str) -> None:
    assert _tables(empty_pg_url) == set()
    migrate.upgrade(empty_pg_url)
    assert migrate.current_revision(empty_pg_url) is not None
    assert _tables(empty_pg_url) == set(Base.metadata.tables)
    assert migrate.schema_drift(empty_pg_url) == []

    migrate.downgrade(empty_pg_url, "base")
    assert migrate.current_revision(empty_pg_url) is None
    assert _tables(empty_pg_url) == set()

    migrate.upgrade(empty_pg_url)
    assert _tables(empty_pg_url) == set(Base.metadata.tables)
    assert migrate.schema_drift(empty_pg_url) == []


def test_same_migrations_run_on_sqlite(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    migrate.upgrade(url)
    assert _tables(url) == set(Base.metadata.tables)
    assert migrate.schema_drift(url) == []
    migrate.downgrade(url, "base")
    assert _tables(url) == set()


def test_drift_check_can_fail(empty_pg_url: str) -> None:
    """A migration that lags the models must show up as drift (the check is not vacuous)."""
    migrate.upgrade(empty_pg_url)
    engine = create_engine(empty_pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_image_pool")
    engine.dispose()
    assert any("ix_image_pool" in repr(d) for d in migrate.schema_drift(empty_pg_url))
