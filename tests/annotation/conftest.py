"""Fixtures for annotation tests: a prompt set with images, made through the REST API."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from sqlalchemy import text

from app.annotation import hotpath
from app.metrics import annotation_requests
from tests.conftest import TEST_SECRET, Account, bearer


def png_bytes(seed: int, size: int = 16, fmt: str = "PNG") -> bytes:
    """A small distinct image per seed (distinct bytes -> distinct content hash)."""
    im = PILImage.new("RGB", (size, size), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    im.putpixel((seed % size, (seed // size) % size), (255, 255, 255))
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


@dataclass
class Pool:
    prompt_set_id: int
    image_ids: list[int]
    researcher: Account


def make_pool(client, researcher: Account, *, n_images: int, k: int = 1, name: str = "pool",
              prompts: list[str] | None = None, **set_fields) -> Pool:
    prompts = prompts or ["Two dogs", "A green colored cat", "A dog in the city"]
    r = client.post("/api/v1/prompt-sets", headers=bearer(researcher),
                    json={"name": name, "prompts": prompts, "labels_per_image": k, **set_fields})
    assert r.status_code == 201, r.text
    ps = r.json()["id"]
    ids = []
    for i in range(n_images):
        r = client.post("/api/v1/images", headers=bearer(researcher),
                        files={"file": (f"{i}.png", png_bytes(i), "image/png")},
                        data={"prompt_set_id": str(ps), "prompt": prompts[i % len(prompts)]})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return Pool(ps, ids, researcher)


def expire_leases(db, table: str = "rating_assignment") -> None:
    """Move every live lease's expiry into the past (as if the annotators walked away)."""
    db.execute(text(f"UPDATE {table} SET lease_expires_at = now() - interval '1 second' WHERE state = 'leased'"))
    db.commit()


def hot_answered(app, path: str | None = None) -> int:
    """Calls the asyncpg hot path answered itself (of one path, or both)."""
    labels = {"path": path} if path else {}
    return int(annotation_requests(app.state.metrics).total(answered_by="hot_path", **labels))


def handed_to_route(app, reason: str | None = None) -> int:
    """Calls the hot path handed to the route (for one reason, or any)."""
    labels = {"reason": reason} if reason else {}
    return int(annotation_requests(app.state.metrics).total(answered_by="route", **labels))


async def _no_pool(self) -> None:
    """HotPath.start leaving the pool unstarted: every call goes on to the route."""


def use_engine(mode: str, settings, monkeypatch) -> None:
    """hot: the asyncpg hot path with the route's fast path behind it (auto, the default); fast: the
    route's fast path alone (the hot path's pool is not started); portable: the SQLAlchemy engine
    (T2IF_ANNOTATION_ENGINE=portable). Must run before the app starts (request it before `client`)."""
    if mode == "portable":
        settings.annotation_engine = "portable"
    elif mode in ("fast", "route"):
        monkeypatch.setattr(hotpath.HotPath, "start", _no_pool)


# ---- one annotation engine fixture --------------------------------------------------------------

ENGINES = ["sqlite-portable", "pg-portable", "pg-fast"]


@dataclass
class Rig:
    """An app on one annotation engine: sqlite-portable (the SQLAlchemy engine on SQLite),
    pg-portable (the same on Postgres, T2IF_ANNOTATION_ENGINE=portable) or pg-fast (Postgres with
    the hot path in front of the fast path, the default)."""

    name: str
    client: Any
    app: Any
    factory: Any
    make_user: Callable[..., Account]

    def sql(self, statement: str, **params: Any) -> Any:
        """Run one statement in its own transaction; the first column of its first row, if any."""
        from app.db.session import transaction

        with transaction(self.factory) as s:
            result = s.execute(text(statement), params)
            return result.scalar() if result.returns_rows else None

    def rows(self, statement: str) -> list[tuple[Any, ...]]:
        from app.db.session import transaction

        with transaction(self.factory) as s:
            return [tuple(r) for r in s.execute(text(statement))]

    def expire(self, table: str) -> None:
        past = "'2000-01-01 00:00:00'" if self.name.startswith("sqlite") else "now() - interval '1 second'"
        self.sql(f"UPDATE {table} SET lease_expires_at = {past} WHERE state = 'leased'")


@contextmanager
def open_rig(name: str, tmp_path: Path, pg_settings: Any = None, pg_factory: Any = None) -> Iterator[Rig]:
    """A fresh app (empty database) on engine `name`; Postgres rigs use the run's test database."""
    from fastapi.testclient import TestClient

    from app.auth import service as auth
    from app.auth.schemas import TokenCreate, UserCreate
    from app.db import migrate
    from app.db.base import Base
    from app.db.session import make_engine, make_sessionmaker, transaction
    from app.jobs.dispatch import RecordingDispatcher
    from app.main import create_app

    engine = None
    if name == "sqlite-portable":
        from app.config import Settings

        url = f"sqlite:///{tmp_path / f'{name}-{uuid.uuid4().hex[:6]}.sqlite3'}"
        migrate.upgrade(url)
        engine = make_engine(url)
        factory = make_sessionmaker(engine)
        settings = Settings(env="test", database_url=url, storage_url=str(tmp_path / "storage"),
                            model_cache_dir=str(tmp_path / "models"), secret_key=TEST_SECRET, log_level="WARNING")
    else:
        factory, settings = pg_factory, pg_settings.model_copy()
        settings.annotation_engine = "portable" if name == "pg-portable" else "auto"
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with transaction(factory) as s:
            s.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    settings.lease_sweep_seconds = 0
    counter = iter(range(1, 10_000))

    def make_user(role: str = "annotator", password: str = "correct-horse-9") -> Account:
        username = f"{role}{next(counter)}"
        with transaction(factory) as s:
            user = auth.create_user(s, UserCreate(username=username, password=password, role=role))
            token = auth.create_token(s, user, TokenCreate(name="t")).token
            return Account(user.id, username, password, role, token)

    app = create_app(settings, session_factory=factory, dispatcher=RecordingDispatcher())
    try:
        with TestClient(app) as client:
            yield Rig(name, client, app, factory, make_user)
    finally:
        if engine is not None:
            engine.dispose()


@pytest.fixture(params=ENGINES)
def rig(request, tmp_path) -> Iterator[Rig]:
    """The annotation rules' tests run on every engine."""
    if request.param == "sqlite-portable":
        with open_rig(request.param, tmp_path) as r:
            yield r
        return
    request.getfixturevalue("db")  # empties the tables afterwards
    with open_rig(request.param, tmp_path, request.getfixturevalue("settings"),
                  request.getfixturevalue("session_factory")) as r:
        yield r
