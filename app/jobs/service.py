"""Jobs: create (validated, deduplicated per scope, enqueued after commit), list, cancel, retry."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.identity import UserIdentity
from app.config import Settings
from app.db.base import utcnow
from app.db.enums import ACTIVE_JOB_STATES, JobState
from app.db.models import Job, JobLog, ModelVersion, PromptSet
from app.errors import Conflict, Invalid, NotFound
from app.jobs.dispatch import enqueue
from app.jobs.schemas import (
    PARAMS_BY_KIND,
    EvaluateParams,
    FinetuneParams,
    GenerateParams,
    JobLogLine,
    JobRead,
    TrainRewardParams,
)

LOG_TAIL = 20


def _params_error(exc: ValidationError) -> Invalid:
    parts = []
    for err in exc.errors()[:5]:
        field = ".".join(str(p) for p in ("params", *err["loc"]))
        parts.append(f"{field}: {str(err['msg']).removeprefix('Value error, ')}")
    return Invalid("; ".join(parts))


def ensure_base_generator(session: Session, settings: Settings) -> ModelVersion:
    """The configured base model (SD v1.5 in production) as a generator version: the root of lineage."""
    base = session.scalar(
        select(ModelVersion).where(ModelVersion.kind == "generator", ModelVersion.mode == "base",
                                   ModelVersion.artifact_url == settings.generator_model)
        .order_by(ModelVersion.id)
    )
    if base is None:
        base = ModelVersion(kind="generator", mode="base", name=f"base: {settings.generator_model}",
                            artifact_url=settings.generator_model, hyperparams={}, label_snapshot={}, metrics={},
                            code_version="")
        session.add(base)
        session.flush()
    return base


def latest_reward(session: Session, prompt_set_id: int) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion).where(ModelVersion.kind == "reward", ModelVersion.prompt_set_id == prompt_set_id)
        .order_by(ModelVersion.id.desc()).limit(1)
    )


def _prompt_set(session: Session, ps_id: int, field: str = "params.prompt_set_id") -> PromptSet:
    ps = session.get(PromptSet, ps_id)
    if ps is None:
        raise Invalid(f"{field}: prompt set {ps_id} does not exist")
    return ps


def _version(session: Session, version_id: int, kind: str, field: str) -> ModelVersion:
    mv = session.get(ModelVersion, version_id)
    if mv is None or mv.kind != kind:
        raise Invalid(f"{field}: {kind} model version {version_id} does not exist")
    return mv


def _resolve(session: Session, settings: Settings, kind: str, params: BaseModel) -> tuple[str, int | None]:
    """Check references, fill defaults into the params (so a job records exactly what it ran), and
    return the job's scope key: never two live jobs of one kind per scope."""
    if isinstance(params, GenerateParams):
        _prompt_set(session, params.prompt_set_id)
        if params.generator_version_id is None:
            params.generator_version_id = ensure_base_generator(session, settings).id
        _version(session, params.generator_version_id, "generator", "params.generator_version_id")
        return f"prompt_set:{params.prompt_set_id}:generator:{params.generator_version_id}", params.prompt_set_id
    if isinstance(params, TrainRewardParams):
        _prompt_set(session, params.prompt_set_id)
        return f"prompt_set:{params.prompt_set_id}", params.prompt_set_id
    if isinstance(params, FinetuneParams):
        _prompt_set(session, params.prompt_set_id)
        if params.generator_version_id is None:
            params.generator_version_id = ensure_base_generator(session, settings).id
        gv = _version(session, params.generator_version_id, "generator", "params.generator_version_id")
        rank = (gv.hyperparams or {}).get("lora_rank")
        if gv.mode == "lora" and params.mode == "lora" and "lora_rank" in params.model_fields_set \
                and params.lora_rank != rank:
            # the worker checks the settings a preset gives as well (workers.handlers.finetune.continue_from)
            raise Invalid(f"params.lora_rank: generator version {gv.id} is a rank-{rank} LoRA fine-tune; a LoRA "
                          f"fine-tune of it continues its adapter, so give lora_rank {rank}, or mode 'full'")
        if params.reward_version_id is None and params.objective != "dpo":  # DPO learns from votes, not a reward
            reward = latest_reward(session, params.prompt_set_id)
            if reward is None:
                raise Invalid("params.reward_version_id: prompt set has no reward model yet; run train_reward first")
            params.reward_version_id = reward.id
        if params.reward_version_id is not None:
            _version(session, params.reward_version_id, "reward", "params.reward_version_id")
        return f"prompt_set:{params.prompt_set_id}", params.prompt_set_id
    if isinstance(params, EvaluateParams):
        ps = _prompt_set(session, params.prompt_set_id)
        if params.baseline_version_id is None:
            params.baseline_version_id = ensure_base_generator(session, settings).id
        _version(session, params.baseline_version_id, "generator", "params.baseline_version_id")
        _version(session, params.candidate_version_id, "generator", "params.candidate_version_id")
        if params.baseline_version_id == params.candidate_version_id:
            raise Invalid("params.candidate_version_id: must differ from the baseline")
        if ps.purpose != "evaluation":
            raise Invalid("params.prompt_set_id: evaluate on an evaluation prompt set (purpose 'evaluation'); the "
                          "images an evaluation draws belong to its set and must stay out of the training data")
        if params.votes_per_comparison is None:
            params.votes_per_comparison = ps.votes_per_comparison
        if params.best_of_n is not None and params.reward_version_id is None:
            source = session.get(ModelVersion, params.candidate_version_id)
            reward_set = source.prompt_set_id if source and source.prompt_set_id else params.prompt_set_id
            reward = latest_reward(session, reward_set)
            if reward is None:
                raise Invalid("params.reward_version_id: best_of_n needs a reward model")
            params.reward_version_id = reward.id
        return f"prompt_set:{params.prompt_set_id}:candidate:{params.candidate_version_id}", params.prompt_set_id
    raise Invalid(f"kind: unknown job kind {kind!r}")  # pragma: no cover


def create_job(session: Session, settings: Settings, kind: str, params: dict[str, Any], *,
               user: UserIdentity | None = None, trigger: dict[str, Any] | None = None,
               parent_job_id: int | None = None) -> Job:
    schema = PARAMS_BY_KIND.get(kind)
    if schema is None:
        raise Invalid(f"kind: must be one of {', '.join(PARAMS_BY_KIND)}")
    try:
        parsed = schema.model_validate(params)
    except ValidationError as exc:
        raise _params_error(exc) from exc
    scope_key, prompt_set_id = _resolve(session, settings, kind, parsed)
    live = session.scalar(select(Job).where(Job.kind == kind, Job.scope_key == scope_key,
                                            Job.state.in_(ACTIVE_JOB_STATES)))
    if live is not None:
        raise Conflict(f"A {kind} job for this scope is already {live.state} (job {live.id}).", code="job_active")
    job = Job(kind=kind, state=JobState.queued.value, params=parsed.model_dump(mode="json"), scope_key=scope_key,
              prompt_set_id=prompt_set_id, progress=0.0, progress_message="queued", result={},
              trigger=trigger or ({"type": "user", "user_id": user.id, "username": user.username} if user else {}),
              parent_job_id=parent_job_id, created_by_id=user.id if user else None,
              queue="cpu" if kind == "train_reward" else "gpu", attempts=0, max_attempts=settings.job_max_attempts)
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError as exc:  # a concurrent create won the partial unique index
        raise Conflict(f"A {kind} job for this scope is already queued or running.", code="job_active") from exc
    enqueue(session, f"jobs.{kind}", job_id=job.id)
    return job


def get_job_row(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"Job {job_id} does not exist.")
    return job


def read_job(session: Session, job_id: int, *, log_lines: int = LOG_TAIL) -> JobRead:
    job = get_job_row(session, job_id)
    out = JobRead.model_validate(job)
    lines = session.scalars(select(JobLog).where(JobLog.job_id == job.id).order_by(JobLog.id.desc()).limit(log_lines))
    out.log_tail = [JobLogLine.model_validate(line) for line in reversed(list(lines))]
    return out


def list_jobs(session: Session, *, kind: str | None = None, state: str | None = None,
              prompt_set_id: int | None = None, limit: int = 100, offset: int = 0) -> list[JobRead]:
    query = select(Job).order_by(Job.id.desc()).limit(limit).offset(offset)
    if kind:
        query = query.where(Job.kind == kind)
    if state:
        query = query.where(Job.state == state)
    if prompt_set_id is not None:
        query = query.where(Job.prompt_set_id == prompt_set_id)
    return [JobRead.model_validate(j) for j in session.scalars(query)]


def add_log(session: Session, job_id: int, message: str, level: str = "info") -> None:
    session.add(JobLog(job_id=job_id, level=level, message=message[:10_000]))


def cancel_job(session: Session, job_id: int, *, user: UserIdentity | None = None) -> JobRead:
    job = session.scalar(select(Job).where(Job.id == job_id).with_for_update())
    if job is None:
        raise NotFound(f"Job {job_id} does not exist.")
    who = user.username if user else "system"
    if job.state == JobState.queued.value:
        job.state, job.finished_at, job.progress_message = JobState.cancelled.value, utcnow(), "cancelled"
        add_log(session, job.id, f"cancelled by {who} before it started")
    elif job.state == JobState.running.value:
        if job.cancel_requested_at is None:
            job.cancel_requested_at = utcnow()
            add_log(session, job.id, f"cancel requested by {who}; stops at the next batch boundary")
    else:
        raise Conflict(f"Job {job_id} has already {job.state}; there is nothing to cancel.", code="job_finished")
    session.flush()
    return read_job(session, job.id)


def retry_job(session: Session, settings: Settings, job_id: int, *, user: UserIdentity | None) -> Job:
    old = get_job_row(session, job_id)
    if old.state not in (JobState.failed.value, JobState.cancelled.value):
        raise Conflict(f"Job {job_id} is {old.state}; only failed or cancelled jobs can be retried.",
                       code="job_not_retryable")
    trigger = {"type": "retry", "of_job": old.id, "user_id": user.id if user else None,
               "original_trigger": old.trigger}
    return create_job(session, settings, old.kind, old.params, user=user, trigger=trigger, parent_job_id=old.id)
