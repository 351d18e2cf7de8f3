"""Engine and session factories. One transaction per request or task, owned by the caller."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as exc_mod
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, pool_size: int = 20, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # foreign keys are off by default in SQLite; WAL lets readers run beside the one writer
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            # take transaction control from the driver so that we can BEGIN IMMEDIATE below
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # SQLite has no row locks: take the write lock up front so two transactions never
            # both read and then fail to upgrade (the demo's scale makes this serialisation free)
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # timestamps come back in UTC whatever the server's TimeZone, as asyncpg's do on the hot path,
    # so an API answer reads the same whichever path produced it
    connect_args = {"options": "-c timezone=UTC", **kwargs.pop("connect_args", {})}
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args=connect_args,
        **kwargs,
    )
    _ping_idle_connections(engine)
    return engine


# A pooled connection is pinged before reuse only if it sat idle for longer than this. pool_pre_ping
# pinged on every checkout: one extra round trip per request, a tenth of the annotation hot path's
# server time. A connection in constant use is known to be alive; one that dies while busy fails
# its statement, and SQLAlchemy then invalidates the pool so the next checkouts reconnect.
PING_AFTER_IDLE_S = 1.0
_IDLE_SINCE = "t2if_idle_since"


def _ping_idle_connections(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since <= PING_AFTER_IDLE_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise exc_mod.DisconnectionError() from exc  # the pool retries with a fresh connection
        if not alive:
            raise exc_mod.DisconnectionError()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: results are read after the boundary commits (see deps.get_session)
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


@lru_cache(maxsize=8)
def engine_for(url: str, pool_size: int = 20) -> Engine:
    return make_engine(url, pool_size=pool_size)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work for code outside a request (CLI, tasks): commit on success, roll back on error."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def upsert_insert(session: Session) -> Any:
    """The dialect's INSERT that knows ON CONFLICT (Postgres in production, SQLite in the demo)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
