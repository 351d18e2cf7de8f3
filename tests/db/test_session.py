"""Engine settings that API answers depend on."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text


def test_timestamps_come_back_in_utc_whatever_the_server_timezone(pg_url, engine):
    """The hot path (asyncpg) always decodes timestamptz in UTC; the routes' psycopg connections
    must too, or the same lease reads '+01:00' on one path and 'Z' on the other."""
    from app.db.session import make_engine

    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        name = c.execute(text("SELECT current_database()")).scalar()
        c.execute(text(f'ALTER DATABASE "{name}" SET timezone = \'Europe/Berlin\''))
    fresh = make_engine(pg_url, pool_size=1)
    try:
        with fresh.connect() as c:
            assert c.execute(text("SHOW timezone")).scalar() == "UTC"
            assert c.execute(text("SELECT timestamptz '2026-07-01 12:00:00+00'")).scalar().utcoffset() == timedelta(0)
    finally:
        fresh.dispose()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text(f'ALTER DATABASE "{name}" RESET timezone'))
