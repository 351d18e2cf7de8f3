"""`t2i-feedback demo`: the embedded default. One process, SQLite, a local storage folder.

Later pieces (tiny models, a demo prompt set, images and an in-process worker) hang off
`prepare_demo`, which is idempotent: a second start reuses the data directory.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import click
import uvicorn
from sqlalchemy import select

from app.auth import service as auth
from app.auth.schemas import UserCreate
from app.config import Settings
from app.db import migrate as migrations
from app.db.enums import Role
from app.db.models import User
from app.db.session import make_engine, make_sessionmaker, transaction
from app.jobs.dispatch import RecordingDispatcher
from app.main import create_app

DEMO_USERS = [
    ("admin", Role.admin),
    ("researcher", Role.researcher),
    ("annotator1", Role.annotator),
    ("annotator2", Role.annotator),
    ("annotator3", Role.annotator),
]


@dataclass
class DemoContext:
    settings: Settings
    logins: dict[str, str]


def _secret_key(data_dir: Path) -> str:
    # persisted so that browser sessions survive a restart of the demo
    path = data_dir / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def demo_settings(data_dir: Path) -> Settings:
    data_dir = data_dir.resolve()
    return Settings(
        env="development",
        database_url=f"sqlite:///{data_dir / 't2i-feedback.sqlite3'}",
        storage_url=str(data_dir / "storage"),
        model_cache_dir=str(data_dir / "models"),
        secret_key=_secret_key(data_dir),
        inprocess_worker=True,
    )


def _ensure_users(settings: Settings, data_dir: Path) -> dict[str, str]:
    logins_path = data_dir / "demo-logins.json"
    logins: dict[str, str] = json.loads(logins_path.read_text()) if logins_path.exists() else {}
    engine = make_engine(settings.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            existing = set(session.scalars(select(User.username)))
            for username, role in DEMO_USERS:
                if username in existing and username in logins:
                    continue
                password = logins.get(username) or f"demo-{secrets.token_urlsafe(6)}"
                if username in existing:  # logins file lost: reset the demo password
                    user = auth.get_user_by_username(session, username)
                    from app.auth.secrets import hash_password

                    user.password_hash = hash_password(password)
                else:
                    auth.create_user(session, UserCreate(username=username, password=password, role=role,
                                                         display_name=username.capitalize()))
                logins[username] = password
    finally:
        engine.dispose()
    logins_path.write_text(json.dumps(logins, indent=2))
    logins_path.chmod(0o600)
    return logins


def prepare_demo(data_dir: Path) -> DemoContext:
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(data_dir)
    Path(settings.storage_url).mkdir(parents=True, exist_ok=True)
    migrations.upgrade(settings.database_url)
    logins = _ensure_users(settings, data_dir)
    return DemoContext(settings=settings, logins=logins)


def run_demo(host: str, port: int, data_dir: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo never downloads weights
    ctx = prepare_demo(data_dir)
    app = create_app(ctx.settings, dispatcher=RecordingDispatcher())
    url = f"http://{host}:{port}/"
    click.echo("")
    click.echo(f"t2i-feedback demo: {url}")
    click.echo(f"data directory: {data_dir.resolve()}")
    click.echo("log-ins (username / password):")
    for username, role in DEMO_USERS:
        click.echo(f"  {role.value:<10} {username:<11} {ctx.logins[username]}")
    click.echo("")
    uvicorn.run(app, host=host, port=port, log_level="warning")
