"""REST: jobs for researchers (create, list with filters, get with log tail, cancel, retry)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from app.deps import ResearcherDep, SessionDep, SettingsDep
from app.jobs import service
from app.jobs.schemas import JobCreate, JobCreated, JobRead

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


@router.post("", response_model=JobCreated, status_code=status.HTTP_202_ACCEPTED)
def create_job(body: JobCreate, principal: ResearcherDep, session: SessionDep, settings: SettingsDep) -> JobCreated:
    job = service.create_job(session, settings, body.kind, body.params, user=principal.user)
    return JobCreated(id=job.id, kind=job.kind, state=job.state)


@router.get("", response_model=list[JobRead])
def list_jobs(
    principal: ResearcherDep,
    session: SessionDep,
    kind: Literal["generate", "train_reward", "finetune", "evaluate"] | None = None,
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
    prompt_set_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[JobRead]:
    return service.list_jobs(session, kind=kind, state=state, prompt_set_id=prompt_set_id, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobRead)
def get_job(job_id: int, principal: ResearcherDep, session: SessionDep) -> JobRead:
    return service.read_job(session, job_id)


@router.post("/{job_id}/cancel", response_model=JobRead)
def cancel_job(job_id: int, principal: ResearcherDep, session: SessionDep) -> JobRead:
    return service.cancel_job(session, job_id, user=principal.user)


@router.post("/{job_id}/retry", response_model=JobCreated, status_code=status.HTTP_202_ACCEPTED)
def retry_job(job_id: int, principal: ResearcherDep, session: SessionDep, settings: SettingsDep) -> JobCreated:
    job = service.retry_job(session, settings, job_id, user=principal.user)
    return JobCreated(id=job.id, kind=job.kind, state=job.state)
