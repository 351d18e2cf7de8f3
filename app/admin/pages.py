"""Dashboard pages (GET): readable by researchers, with action controls rendered for admins only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from app.admin import actions, annotators, evaluations, jobs, models, overview
from app.db.enums import Role
from app.deps import Principal, ResearcherDep, SessionDep
from app.web import render

router = APIRouter(prefix="/admin", include_in_schema=False)


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
    return page(
        request,
        principal,
        "admin/annotators.html",
        {
            "report": annotators.annotator_report(session),
            "me": principal.user.id,
            "roles": [r.value for r in Role],
            "notice": actions.NOTICES.get(notice or ""),
            "limits": annotators,
        },
    )


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, principal: ResearcherDep, session: SessionDep) -> Response:
    return page(request, principal, "admin/jobs.html", {"jobs": jobs.recent_jobs(session)})


@router.get("/jobs.json")
def jobs_json(principal: ResearcherDep, session: SessionDep, id: int | None = None) -> JSONResponse:
    """What the jobs pages poll every 2 s to move their progress bars without a reload."""
    return JSONResponse(
        {"jobs": [v.as_json() for v in jobs.job_views(session, id)]}, headers={"cache-control": "no-store"}
    )


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


router.include_router(actions.router)
