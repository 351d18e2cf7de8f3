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
from sqlalchemy.orm import Session, sessionmaker

from app.auth import service as auth
from app.auth.schemas import UserCreate
from app.config import Settings
from app.db import migrate as migrations
from app.db.enums import Role
from app.db.models import PromptSet, User
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
        model_cache_dir=str(data_dir / "cache"),
        generator_model=str(data_dir / "models" / "tiny-sd"),
        clip_model=str(data_dir / "models" / "tiny-clip"),
        secret_key=_secret_key(data_dir),
        retrain_check_seconds=5.0,
        log_level="WARNING",
    )


def _ensure_tiny_models(settings: Settings) -> None:
    """Random-weight SD and CLIP folders, made once: loaded by the same code as the real ones."""
    from ml.tiny import write_tiny_clip, write_tiny_sd

    sd, clip = Path(settings.generator_model), Path(settings.clip_model)
    if not (sd / "model_index.json").exists():
        click.echo("making the tiny Stable Diffusion model (first run only)...")
        write_tiny_sd(sd)
    if not (clip / "config.json").exists():
        click.echo("making the tiny CLIP model (first run only)...")
        write_tiny_clip(clip)


def _ensure_demo_data(settings: Settings, factory: sessionmaker[Session], admin_username: str) -> None:
    """A training prompt set (automatic retrain -> LoRA fine-tune -> evaluation chained) and an
    evaluation set; the first generation job is queued on first start."""
    from app.jobs import service as jobs
    from app.prompts import service as prompt_sets
    from app.prompts.schemas import PromptSetCreate, TemplateSpec

    # through the app's session factory: the generate job reaches the in-process worker on commit
    with transaction(factory) as session:
        if session.scalar(select(PromptSet.id).where(PromptSet.name == "demo")) is not None:
            return
        admin = auth.get_user_by_username(session, admin_username)
        evaluation = prompt_sets.create_prompt_set(session, settings, PromptSetCreate(
            name="demo evaluation", purpose="evaluation", template=TemplateSpec(size=8, seed=1),
            description="held-out prompts (seen and unseen objects) for blind comparisons",
            votes_per_comparison=3), creator=admin)
        training = prompt_sets.create_prompt_set(session, settings, PromptSetCreate(
            name="demo", template=TemplateSpec(size=24, seed=0), labels_per_image=1, retrain_threshold=20,
            description="probe prompts from the paper's templates; 20 new labels retrain the reward model",
            auto_chain={"finetune": {"mode": "lora", "max_steps": 20, "batch_size": 4},
                        "evaluate": {"prompt_set_id": evaluation.id, "images_per_prompt": 2,
                                     "sampler": {"steps": 10}}}), creator=admin)
        jobs.create_job(session, settings, "generate",
                        {"prompt_set_id": training.id, "images_per_prompt": 4,
                         "sampler": {"steps": 10, "batch_size": 8}}, user=admin)


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
    _ensure_tiny_models(settings)
    return DemoContext(settings=settings, logins=logins)


def run_demo(host: str, port: int, data_dir: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo never downloads weights
    from workers.inprocess import InProcessWorker
    from workers.runtime import Runtime

    ctx = prepare_demo(data_dir)
    dispatcher = RecordingDispatcher()
    app = create_app(ctx.settings, dispatcher=dispatcher)
    worker = InProcessWorker(Runtime(ctx.settings, dispatcher=dispatcher, session_factory=app.state.sessionmaker),
                             dispatcher)
    worker.start()
    _ensure_demo_data(ctx.settings, app.state.sessionmaker, "admin")
    url = f"http://{host}:{port}/"
    click.echo("")
    click.echo(f"t2i-feedback demo: {url}")
    click.echo(f"data directory: {data_dir.resolve()}")
    click.echo("log-ins (username / password):")
    for username, role in DEMO_USERS:
        click.echo(f"  {role.value:<10} {username:<11} {ctx.logins[username]}")
    click.echo("")
    click.echo("the first images are being generated; rate them at /annotate as they arrive")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        worker.shutdown()
