"""Shared fixtures: a fresh Postgres database per test run, built by the Alembic migrations.

Every run creates its own database (t2if_test_<random>) on the Postgres at T2IF_TEST_PG_URL and
drops it at the end, so runs never see each other's data. Tests that touch the database get a
clean slate: all tables are truncated after each test (this also works for tests that drive a
real server process, which a rolled-back outer transaction would not).
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PG_ADMIN_URL = os.environ.get("T2IF_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("T2IF_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_SECRET = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


def create_database(prefix: str = "t2if_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    from app.db import migrate

    url = create_database()
    try:
        migrate.upgrade(url)
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="session")
def engine(pg_url: str):
    from app.db.session import make_engine

    eng = make_engine(pg_url, pool_size=10)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def session_factory(engine):
    from app.db.session import make_sessionmaker

    return make_sessionmaker(engine)


@pytest.fixture
def db(engine, session_factory) -> Iterator:
    """A session for arranging and checking data; every table is emptied after the test."""
    from app.db.base import Base

    session = session_factory()
    try:
        yield session
    finally:
        session.close()
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def settings(pg_url: str, tmp_path):
    from app.config import Settings

    return Settings(
        env="test",
        database_url=pg_url,
        broker_url=REDIS_URL,
        storage_url=str(tmp_path / "storage"),
        model_cache_dir=str(tmp_path / "models"),
        secret_key=TEST_SECRET,
        login_max_failures=3,
        login_account_max_failures=6,
        login_lock_seconds=60,
        log_level="WARNING",
    )


@pytest.fixture
def dispatcher():
    from app.jobs.dispatch import RecordingDispatcher

    return RecordingDispatcher()


@pytest.fixture
def app(settings, session_factory, dispatcher, db):
    from app.main import create_app

    return create_app(settings, session_factory=session_factory, dispatcher=dispatcher)


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@dataclass
class Account:
    id: int
    username: str
    password: str
    role: str
    token: str


@pytest.fixture
def make_user(db, session_factory):
    """Create a user (and an API token) committed to the database."""
    from app.auth import service as auth
    from app.auth.schemas import TokenCreate, UserCreate
    from app.db.session import transaction

    counter = iter(range(1, 10_000))

    def _make(role: str = "annotator", username: str | None = None, password: str = "correct-horse-9") -> Account:
        username = username or f"{role}{next(counter)}"
        with transaction(session_factory) as s:
            user = auth.create_user(s, UserCreate(username=username, password=password, role=role))
            token = auth.create_token(s, user, TokenCreate(name="test")).token
            return Account(user.id, user.username, password, role, token)

    return _make


@pytest.fixture
def researcher(make_user) -> Account:
    return make_user("researcher")


def bearer(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.token}"}


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("T2IF_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing and T2IF_REQUIRE_BROWSER=1")
        pytest.skip(f"{CHROMIUM} is missing (set T2IF_REQUIRE_BROWSER=1 to make this a failure)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """The test app served by uvicorn on a thread, for the browser tests."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port; no race with other runs
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_META = re.compile(r'name="csrf-token" content="([^"]+)"')


def browser_login(client, username: str, password: str) -> str:
    """Log in through the HTML form like a browser; returns the session's CSRF token."""
    page = client.get("/login")
    token = CSRF_INPUT.search(page.text).group(1)
    response = client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    home = client.get("/")
    return CSRF_META.search(home.text).group(1)
