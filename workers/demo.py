"""`t2i-feedback demo`: the embedded default. One process, SQLite, a local storage folder, an
in-process worker, and the shipped shapes-world models on the CPU.

On first start it writes the world's pre-training pairs (the β term), creates the demo users, a
training prompt set in the world's vocabulary whose labels retrain the reward model by themselves
(then fine-tuning and a blind evaluation are chained), an evaluation set with seen and unseen
objects, and queues the first images. Simulated oracle raters (`workers.simulate`) rate and vote
beside the people, through the same REST API, so that a round of the loop completes within minutes;
a watcher prints what each finished job means. `prepare_demo` is idempotent: a second start reuses
the data directory.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
import uvicorn
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.auth import service as auth
from app.auth.schemas import UserCreate
from app.config import Settings
from app.db import migrate as migrations
from app.db.enums import Role
from app.db.models import Evaluation, Job, PromptSet, User
from app.db.session import make_engine, make_sessionmaker, transaction
from app.jobs.dispatch import RecordingDispatcher
from app.logging import access_log_to_file
from app.main import create_app

DEMO_USERS = [
    ("admin", Role.admin),
    ("researcher", Role.researcher),
    ("annotator1", Role.annotator),
    ("annotator2", Role.annotator),
    ("annotator3", Role.annotator),
]
ORACLE_PREFIX = "oracle"
TRAIN_PROMPTS, IMAGES_PER_PROMPT = 32, 16  # the labelled pool: 512 images
EVAL_PROMPTS, EVAL_IMAGES = 24, 4  # 24 blind queries of 4 images a side (the paper's)
WORLD_SAMPLER = {"steps": 20, "guidance_scale": 3.0, "batch_size": 64}  # ml.world.loop.WORLD_GUIDANCE


@dataclass
class DemoOptions:
    models: Path | None = None  # a folder with sd/ and clip/; None: the shipped world models
    simulated_raters: int = 9
    rater_error: float = 0.1


@dataclass
class DemoContext:
    settings: Settings
    logins: dict[str, str]
    world: bool
    raters: list[str] = field(default_factory=list)  # usernames of the simulated annotators


def _secret_key(data_dir: Path) -> str:
    # persisted so that browser sessions survive a restart of the demo
    path = data_dir / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def models_folder(options: DemoOptions) -> Path:
    from ml.world import SHIPPED_MODELS

    folder = (options.models or SHIPPED_MODELS).resolve()
    for part in ("sd", "clip"):
        if not (folder / part).is_dir():
            raise click.ClickException(f"{folder} has no {part}/ folder: --models wants a folder with sd/ and clip/ "
                                       "(as `t2i-feedback ml make-world-models` or `make-tiny-models` write)")
    return folder


def demo_settings(data_dir: Path, models: Path, world: bool) -> Settings:
    data_dir = data_dir.resolve()
    return Settings(
        env="development",
        database_url=f"sqlite:///{data_dir / 't2i-feedback.sqlite3'}",
        storage_url=str(data_dir / "storage"),
        model_cache_dir=str(data_dir / "cache"),
        generator_model=str(models / "sd"),
        clip_model=str(models / "clip"),
        pretrain_dir=str(data_dir / "pretrain") if world else None,
        secret_key=_secret_key(data_dir),
        retrain_check_seconds=5.0,
        log_level="WARNING",
    )


def _check_models_unchanged(data_dir: Path, models: Path) -> None:
    """A data directory keeps the models it was made with: its images and versions depend on them."""
    state = data_dir / "demo.json"
    if state.exists():
        before = json.loads(state.read_text()).get("models")
        if before != str(models):
            raise click.ClickException(
                f"{data_dir} was made with the models in {before}; start with those (--models) "
                f"or use another --data-dir")
    else:
        state.write_text(json.dumps({"models": str(models)}))


def _ensure_pretrain_pairs(settings: Settings) -> None:
    """The world's pre-training pairs, for fine-tuning's β term (written once)."""
    from ml.world.corpus import write_pretrain_folder

    if settings.pretrain_dir and not (Path(settings.pretrain_dir) / "metadata.jsonl").exists():
        write_pretrain_folder(settings.pretrain_dir, 1000, seed=1)


def _auto_chain(evaluation_id: int, votes: int, world: bool) -> dict[str, Any]:
    if not world:
        return {"finetune": {"mode": "lora", "max_steps": 20, "batch_size": 4},
                "evaluate": {"prompt_set_id": evaluation_id, "images_per_prompt": 2, "sampler": {"steps": 10}}}
    return {
        "train_reward": {"min_labels": 20},
        "finetune": {"preset": "world"},
        "evaluate": {"prompt_set_id": evaluation_id, "images_per_prompt": EVAL_IMAGES,
                     "votes_per_comparison": votes, "sampler": WORLD_SAMPLER},
    }


def votes_per_pair(ctx: DemoContext) -> int:
    """The paper's 9 raters per pair when the simulated raters run beside the three demo annotators;
    fewer otherwise, so that the people at hand can finish the evaluation (the evaluation page and
    the banner say so)."""
    return min(9, len(ctx.raters) + 3) if ctx.world else 3


def _ensure_demo_data(ctx: DemoContext, factory: sessionmaker[Session], admin_username: str) -> None:
    """A training prompt set (automatic retrain -> fine-tune -> evaluation chained) and an
    evaluation set; the first generation job is queued on first start."""
    from app.jobs import service as jobs
    from app.prompts import service as prompt_sets
    from app.prompts.schemas import PromptSetCreate, TemplateSpec

    settings, world = ctx.settings, ctx.world
    vocabulary = "world" if world else "paper"
    votes = votes_per_pair(ctx)
    threshold = (TRAIN_PROMPTS * IMAGES_PER_PROMPT * 3 // 4 if ctx.raters else 64) if world else 20
    # through the app's session factory: the generate job reaches the in-process worker on commit
    with transaction(factory) as session:
        if session.scalar(select(PromptSet.id).where(PromptSet.name == "demo")) is not None:
            return
        admin = auth.get_user_by_username(session, admin_username)
        evaluation = prompt_sets.create_prompt_set(session, settings, PromptSetCreate(
            name="demo evaluation", purpose="evaluation", votes_per_comparison=votes,
            template=TemplateSpec(size=EVAL_PROMPTS if world else 8, seed=1, vocabulary=vocabulary),
            description="held-out prompts (seen and unseen objects) for blind comparisons"), creator=admin)
        training = prompt_sets.create_prompt_set(session, settings, PromptSetCreate(
            name="demo", labels_per_image=1, retrain_threshold=threshold,
            # seen objects only (the default of a training set): the unseen ones are for evaluation
            template=TemplateSpec(size=TRAIN_PROMPTS if world else 24, seed=0, vocabulary=vocabulary),
            description=f"probe prompts; {threshold} new labels retrain the reward model, then the generator is "
                        "fine-tuned and evaluated blind against the original",
            auto_chain=_auto_chain(evaluation.id, votes, world)), creator=admin)
        jobs.create_job(session, settings, "generate",
                        {"prompt_set_id": training.id, "images_per_prompt": IMAGES_PER_PROMPT if world else 4,
                         "sampler": WORLD_SAMPLER if world else {"steps": 10, "batch_size": 8}}, user=admin)


def _ensure_users(settings: Settings, data_dir: Path, raters: list[str]) -> dict[str, str]:
    logins_path = data_dir / "demo-logins.json"
    logins: dict[str, str] = json.loads(logins_path.read_text()) if logins_path.exists() else {}
    engine = make_engine(settings.database_url)
    wanted = DEMO_USERS + [(name, Role.annotator) for name in raters]
    try:
        with transaction(make_sessionmaker(engine)) as session:
            existing = set(session.scalars(select(User.username)))
            for username, role in wanted:
                if username in existing and username in logins:
                    continue
                password = logins.get(username) or f"demo-{secrets.token_urlsafe(6)}"
                if username in existing:  # logins file lost: reset the demo password
                    user = auth.get_user_by_username(session, username)
                    from app.auth.secrets import hash_password

                    user.password_hash = hash_password(password)
                else:
                    display = f"Oracle rater {username.removeprefix(ORACLE_PREFIX)}" if username in raters \
                        else username.capitalize()
                    auth.create_user(session, UserCreate(username=username, password=password, role=role,
                                                         display_name=display))
                logins[username] = password
    finally:
        engine.dispose()
    logins_path.write_text(json.dumps(logins, indent=2))
    logins_path.chmod(0o600)
    return logins


def prepare_demo(data_dir: Path, options: DemoOptions | None = None) -> DemoContext:
    options = options or DemoOptions()
    data_dir.mkdir(parents=True, exist_ok=True)
    models = models_folder(options)
    world = (models / "sd" / "world.json").exists()
    _check_models_unchanged(data_dir.resolve(), models)
    settings = demo_settings(data_dir, models, world)
    Path(settings.storage_url).mkdir(parents=True, exist_ok=True)
    migrations.upgrade(settings.database_url)
    raters = [f"{ORACLE_PREFIX}{i}" for i in range(1, options.simulated_raters + 1)] if world else []
    logins = _ensure_users(settings, data_dir, raters)
    if world:
        _ensure_pretrain_pairs(settings)
    return DemoContext(settings=settings, logins=logins, world=world, raters=raters)


class Narrator:
    """Prints, once each, what the loop did: finished jobs in words and evaluations as they complete."""

    def __init__(self, factory: sessionmaker[Session], url: str) -> None:
        self.factory, self.url = factory, url
        self.seen_jobs: set[int] = set()
        self.seen_started: set[int] = set()
        self.done_evaluations: set[int] = set()

    def _say(self, text: str) -> None:
        click.echo(f"[{time.strftime('%H:%M:%S')}] {text}")

    def job_line(self, job: Job) -> str | None:
        r = job.result or {}
        if job.state == "failed":
            return f"{job.kind} job {job.id} failed: {job.error}"
        if job.state != "succeeded":
            return None
        if job.kind == "generate":
            return f"{r.get('images', 0)} images are ready: rate them at {self.url}annotate"
        if job.kind == "train_reward":
            m = r.get("metrics") or {}
            auc = m.get("auc")
            return (f"reward model ready, trained on {r.get('label_snapshot', {}).get('labels', '?')} labels"
                    + (f" (held-out AUC {auc:.2f})" if isinstance(auc, float) else "")
                    + f": {self.url}admin/models; fine-tuning follows")
        if job.kind == "finetune":
            return (f"fine-tuned generator ready after {r.get('steps')} steps: {self.url}admin/models; "
                    "a blind evaluation follows")
        if job.kind == "evaluate":
            oracle = (r.get("oracle") or {}).get("sentence")
            ids = r.get("evaluation_ids") or []
            where = f"{self.url}admin/evaluations/{ids[0]}" if ids else f"{self.url}admin/evaluations"
            return (f"evaluation ready: {r.get('comparisons', 0)} blind queries to vote on at {self.url}compare; "
                    f"results at {where}" + (f"\n           {oracle}" if oracle else ""))
        return None

    STARTED = {"train_reward": "the loop has enough new labels: the reward model is training",
               "finetune": "fine-tuning the generator with the new reward model",
               "evaluate": "generating the blind evaluation's images (original vs fine-tuned)"}

    def poll(self) -> None:
        from app.evaluations.service import evaluation_results

        with transaction(self.factory) as s:
            for job in s.scalars(select(Job).where(Job.state == "running", Job.kind.in_(list(self.STARTED)))
                                 .order_by(Job.id)):
                if job.id not in self.seen_started:
                    self.seen_started.add(job.id)
                    self._say(f"{self.STARTED[job.kind]} (job {job.id}; progress at {self.url}admin/jobs)")
            for job in s.scalars(select(Job).where(Job.state.in_(("succeeded", "failed"))).order_by(Job.id)):
                if job.id in self.seen_jobs:
                    continue
                self.seen_jobs.add(job.id)
                line = self.job_line(job)
                if line:
                    self._say(line)
            for ev_id in s.scalars(select(Evaluation.id).order_by(Evaluation.id)):
                if ev_id in self.done_evaluations:
                    continue
                ev = evaluation_results(s, ev_id)
                if ev.comparisons and ev.complete == ev.comparisons:
                    self.done_evaluations.add(ev_id)
                    self._say(self.evaluation_line(ev))

    @staticmethod
    def evaluation_line(ev: Any) -> str:
        total = next((g for g in ev.results if g.group == "all"), None)
        if total is None:
            return f"evaluation {ev.id}: complete"
        a = total.alignment
        return (f"evaluation {ev.id} complete ({ev.votes_per_comparison} votes on each of {ev.comparisons} queries): "
                f"raters say the fine-tuned model follows the prompt better in {100 * (a.win.share or 0):.0f}% of "
                f"queries and worse in {100 * (a.loss.share or 0):.0f}%; at least {ev.agreement_threshold} of "
                f"{ev.votes_per_comparison} agree on a win in {100 * (a.agreed_win.share or 0):.0f}%; "
                f"verdict: {a.verdict}")

    def run(self, stop: threading.Event, every: float = 3.0) -> None:
        with transaction(self.factory) as s:  # what happened before this start was said before
            self.seen_jobs = set(s.scalars(select(Job.id).where(Job.state.in_(("succeeded", "failed")))))
            self.seen_started = set(self.seen_jobs)
        while not stop.wait(every):
            try:
                self.poll()
            except Exception as exc:  # the narration must never take the demo down
                click.echo(f"(progress report failed: {exc})", err=True)


def startup_line(factory: sessionmaker[Session], url: str) -> str:
    """What the demo is doing as it starts, true on a first start and on a restart alike."""
    from app.annotation.progress import images_to_come
    from app.db.models import Image

    with transaction(factory) as s:
        active = list(s.scalars(select(Job).where(Job.state.in_(("queued", "running"))).order_by(Job.id)))
        coming = sum(images_to_come(s, job) for job in active if job.kind == "generate")
        training = select(PromptSet.id).where(PromptSet.purpose == "training")
        open_images = s.scalar(select(func.count()).select_from(Image).where(
            Image.ratings_open > 0, Image.gold_label.is_(None), Image.prompt_set_id.in_(training))) or 0
    lines = []
    if coming:
        lines.append(f"{coming} image{' is' if coming == 1 else 's are'} being generated; "
                     f"rate them at {url}annotate as they arrive")
    if open_images:
        lines.append(f"{open_images} image{' waits' if open_images == 1 else 's wait'} for labels at {url}annotate")
    others = sorted({job.kind.replace("_", " ") for job in active if job.kind != "generate"})
    if others:
        lines.append(f"resuming: {', '.join(others)} (progress at {url}admin/jobs)")
    if not lines:
        lines.append(f"nothing is being generated and every image has its labels; results at {url}admin/evaluations")
    return "\n".join(lines)


def _start_raters(ctx: DemoContext, base_url: str, error_rate: float, stop: threading.Event) -> None:
    from workers.simulate import SimulatedAnnotator, run_team

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not stop.is_set():
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        stop.wait(0.5)
    team = [SimulatedAnnotator(base_url, name, ctx.logins[name], error_rate=error_rate, seed=i, pace=0.3)
            for i, name in enumerate(ctx.raters)]
    run_team(team, stop, idle_wait=3.0)


def run_demo(host: str, port: int, data_dir: Path, options: DemoOptions | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo never downloads weights
    from workers.inprocess import InProcessWorker
    from workers.runtime import Runtime

    options = options or DemoOptions()
    ctx = prepare_demo(data_dir, options)
    dispatcher = RecordingDispatcher()
    app = create_app(ctx.settings, dispatcher=dispatcher)
    access_log = access_log_to_file(data_dir / "access.log")
    worker = InProcessWorker(Runtime(ctx.settings, dispatcher=dispatcher, session_factory=app.state.sessionmaker),
                             dispatcher)
    worker.start()
    _ensure_demo_data(ctx, app.state.sessionmaker, "admin")
    url = f"http://{host}:{port}/"
    local = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    click.echo("")
    click.echo(f"t2i-feedback demo: {url}")
    click.echo(f"data directory: {data_dir.resolve()}")
    click.echo(f"request log: {access_log.resolve()} (one line per request)")
    click.echo(f"models: {Path(ctx.settings.generator_model).parent}"
               + (" (the shapes world: shapes, counts, colours, backgrounds, judged by a pixel oracle)"
                  if ctx.world else ""))
    click.echo("log-ins (username / password):")
    for username, role in DEMO_USERS:
        click.echo(f"  {role.value:<10} {username:<11} {ctx.logins[username]}")
    if ctx.raters:
        click.echo(f"{len(ctx.raters)} simulated raters ({ctx.raters[0]}-{ctx.raters[-1]}, about "
                   f"{100 * options.rater_error:.0f}% wrong answers) rate and vote beside you through the REST API; "
                   "--simulated-raters 0 leaves it all to you")
    votes = votes_per_pair(ctx)
    if votes < 9:
        click.echo(f"the blind evaluation asks {votes} raters per pair, not the paper's 9 "
                   f"({len(ctx.raters)} simulated raters + 3 demo annotators); its page says so")
    click.echo("")
    click.echo(startup_line(app.state.sessionmaker, url))
    stop = threading.Event()
    threading.Thread(target=Narrator(app.state.sessionmaker, url).run, args=(stop,), daemon=True).start()
    if ctx.raters:
        threading.Thread(target=_start_raters, args=(ctx, local, options.rater_error, stop), daemon=True).start()
    try:
        # one Ctrl-C: uvicorn stops serving (open requests get a few seconds), then the worker
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
    finally:
        stop.set()
        click.echo("stopping: a running job stops at its next step and resumes on the next start")
        if worker.shutdown(timeout=20):
            click.echo(f"stopped; `t2i-feedback demo --data-dir {data_dir}` carries on where this left off")
        else:
            click.echo("the running job did not stop within 20 s; it resumes on the next start", err=True)
