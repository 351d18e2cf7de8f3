"""The job queue as the dashboard shows it: recent jobs, their triggers, and each job's log tail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.admin.triggers import MAX_DEPTH, Names, Piece, describe
from app.admin.triggers import text as trigger_text
from app.db.enums import ACTIVE_JOB_STATES
from app.db.models import Job, JobLog, PromptSet, User
from app.errors import NotFound

LIST_LIMIT = 100
LOG_TAIL = 20
RETRYABLE_STATES = ("failed", "cancelled")


@dataclass
class JobView:
    job: Job
    trigger_pieces: list[Piece]

    @property
    def trigger(self) -> str:
        return trigger_text(self.trigger_pieces)

    @property
    def cancellable(self) -> bool:
        return self.job.state in ACTIVE_JOB_STATES and self.job.cancel_requested_at is None

    @property
    def retryable(self) -> bool:
        return self.job.state in RETRYABLE_STATES

    def as_json(self) -> dict[str, Any]:
        j = self.job
        iso = lambda d: d.isoformat() if d else None  # noqa: E731
        return {
            "id": j.id,
            "kind": j.kind,
            "state": j.state,
            "progress": round(j.progress, 1),
            "message": j.progress_message,
            "error": j.error,
            "trigger": self.trigger,
            "trigger_pieces": [p.as_json() for p in self.trigger_pieces],
            "created_at": iso(j.created_at),
            "started_at": iso(j.started_at),
            "finished_at": iso(j.finished_at),
            "cancel_requested": j.cancel_requested_at is not None,
            "cancellable": self.cancellable,
            "retryable": self.retryable,
        }


def _user_ids(trigger: Any, depth: int = 0) -> set[int]:
    if not isinstance(trigger, dict) or depth > MAX_DEPTH:
        return set()
    found = {trigger["user_id"]} if isinstance(trigger.get("user_id"), int) else set()
    for value in trigger.values():
        found |= _user_ids(value, depth + 1)
    return found


def _views(session: Session, jobs: list[Job]) -> list[JobView]:
    ids: set[int] = set()
    for j in jobs:
        ids |= _user_ids(j.trigger)
    users = dict(session.execute(select(User.id, User.username).where(User.id.in_(ids))).all()) if ids else {}
    set_ids = {j.prompt_set_id for j in jobs if j.prompt_set_id is not None}
    sets = dict(session.execute(select(PromptSet.id, PromptSet.name).where(PromptSet.id.in_(set_ids))).all()) \
        if set_ids else {}
    names = Names(users, sets)
    return [JobView(j, describe(j.trigger, names, j.prompt_set_id)) for j in jobs]


@dataclass(frozen=True)
class JobPage:
    """One page of the jobs list, newest first: ids below `before`, filtered by state and kind."""

    views: list[JobView]
    older: int | None  # `before` of the next (older) page, None on the last one
    before: int | None
    state: str | None
    kind: str | None


def recent_jobs(session: Session, limit: int = LIST_LIMIT, *, before: int | None = None, state: str | None = None,
                kind: str | None = None) -> JobPage:
    """Keyset paging on the primary key: a page stays the same while new jobs arrive."""
    query = select(Job).order_by(Job.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(Job.id < before)
    if state is not None:
        query = query.where(Job.state == state)
    if kind is not None:
        query = query.where(Job.kind == kind)
    rows = list(session.scalars(query))
    older = rows[limit - 1].id if len(rows) > limit else None
    return JobPage(_views(session, rows[:limit]), older, before, state, kind)


def job_views(session: Session, job_id: int | None = None, **page: Any) -> list[JobView]:
    """A page of jobs (as the list shows it), or just the one asked for (the detail page)."""
    if job_id is None:
        return recent_jobs(session, **page).views
    job = session.get(Job, job_id)
    return _views(session, [job]) if job else []


def job_detail(session: Session, job_id: int) -> tuple[JobView, list[JobLog]]:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"Job {job_id} does not exist.")
    tail = list(
        session.scalars(
            select(JobLog).where(JobLog.job_id == job_id).order_by(JobLog.id.desc()).limit(LOG_TAIL)
        )
    )
    tail.reverse()
    return _views(session, [job])[0], tail
