"""Dashboard pages (GET): readable by researchers, with action controls rendered for admins only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.orm import Session

from app.admin import annotators, evaluations, jobs, models, overview
from app.db.base import utcnow
from app.db.enums import JobKind, JobState, Role, values
from app.deps import Principal, ResearcherDep, SessionDep
from app.errors import Invalid
from app.web import render

router = APIRouter(prefix="/admin", include_in_schema=False)

# what the admin actions (actions.py) report after redirecting back to the annotators page
NOTICES = {
    "created": "User created.",
    "deactivated": "User deactivated; their sessions have been ended.",
    "activated": "User activated.",
    "role": "Role changed.",
    "unlocked": "Account unlocked: its owner can log in again.",
}


def page(request: Request, principal: Principal, name: str, context: dict[str, Any]) -> HTMLResponse:
    ctx = {"can_act": principal.role == Role.admin, "section": name.split("/")[-1].removesuffix(".html")}
    ctx.update(context)
    response = render(request, name, ctx)
    response.headers["cache-control"] = "no-store"
    return response


@router.get("", response_class=HTMLResponse)
def overview_page(request: Request, principal: ResearcherDep, session: SessionDep) -> Response:
    return page(
        request,
        principal,
        "admin/overview.html",
        {"sets": overview.overview(session), "format_eta": overview.format_eta},
    )


@router.get("/annotators", response_class=HTMLResponse)
def annotators_page(
    request: Request, principal: ResearcherDep, session: SessionDep, notice: str | None = None
) -> Response:
    return annotators_view(request, principal, session, notice=NOTICES.get(notice or ""))


def annotators_view(request: Request, principal: Principal, session: Session, *, notice: str | None = None,
                    error: str | None = None, form: dict[str, str] | None = None,
                    status_code: int = 200) -> HTMLResponse:
    """The annotators page; a refused admin action shows it again with the reason beside the form
    and what was typed kept (never the password), under the refusal's status code."""
    response = page(
        request,
        principal,
        "admin/annotators.html",
        {
            "report": annotators.annotator_report(session),
            "me": principal.user.id,
            "roles": [r.value for r in Role],
            "notice": notice,
            "error": error,
            "form": form or {},
            "limits": annotators,
            "now": utcnow(),
        },
    )
    response.status_code = status_code
    return response


def _job_filters(before: int | None, state: str | None, kind: str | None) -> dict[str, Any]:
    """The list's query: an empty select ("any") means no filter; anything else must be a known value."""
    state, kind = state or None, kind or None
    if state is not None and state not in values(JobState):
        raise Invalid(f"Unknown job state {state!r}; use one of {', '.join(values(JobState))}.")
    if kind is not None and kind not in values(JobKind):
        raise Invalid(f"Unknown job kind {kind!r}; use one of {', '.join(values(JobKind))}.")
    return {"before": before, "state": state, "kind": kind}


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, principal: ResearcherDep, session: SessionDep, before: int | None = None,
              state: str | None = None, kind: str | None = None) -> Response:
    listing = jobs.recent_jobs(session, **_job_filters(before, state, kind))
    return page(request, principal, "admin/jobs.html", {
        "jobs": listing.views, "listing": listing, "states": values(JobState), "kinds": values(JobKind)})


@router.get("/jobs.json")
def jobs_json(principal: ResearcherDep, session: SessionDep, id: int | None = None, before: int | None = None,
              state: str | None = None, kind: str | None = None) -> JSONResponse:
    """What the jobs pages poll every 2 s to move their progress bars without a reload (the same
    page of the list as the one shown, or the one job of a detail page)."""
    views = jobs.job_views(session, id, **_job_filters(before, state, kind))
    return JSONResponse({"jobs": [v.as_json() for v in views]}, headers={"cache-control": "no-store"})


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: int, request: Request, principal: ResearcherDep, session: SessionDep) -> Response:
    view, tail = jobs.job_detail(session, job_id)
    return page(request, principal, "admin/job.html", {"v": view, "tail": tail, "tail_limit": jobs.LOG_TAIL})


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, principal: ResearcherDep, session: SessionDep) -> Response:
    return page(request, principal, "admin/models.html", {"nodes": models.lineage(session)})


@router.get("/evaluations", response_class=HTMLResponse)
def evaluations_page(request: Request, principal: ResearcherDep, session: SessionDep) -> Response:
    evs = evaluations.list_evaluations(session)
    return page(request, principal, "admin/evaluations.html", {"evaluations": evs})


@router.get("/evaluations/{evaluation_id}", response_class=HTMLResponse)
def evaluation_page(
    evaluation_id: int, request: Request, principal: ResearcherDep, session: SessionDep
) -> Response:
    return page(
        request, principal, "admin/evaluation.html", evaluations.evaluation_page(session, evaluation_id)
    )


@router.get("/comparisons/{comparison_id}", response_class=HTMLResponse)
def comparison_page(
    comparison_id: int, request: Request, principal: ResearcherDep, session: SessionDep
) -> Response:
    return page(
        request, principal, "admin/comparison.html", evaluations.comparison_page(session, comparison_id)
    )
