"""The exports page: pick a dataset, a format and filters, download (a plain GET form on the REST export)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from app.db.models import Evaluation, PromptSet
from app.deps import ResearcherDep, SessionDep
from app.exports.service import ATTRIBUTES, RATING_SCHEMA, VOTE_SCHEMA
from app.web import render

router = APIRouter(include_in_schema=False)


@router.get("/exports", response_class=HTMLResponse)
def exports_page(request: Request, principal: ResearcherDep, session: SessionDep) -> Response:
    prompt_sets = session.execute(
        select(PromptSet.id, PromptSet.name, PromptSet.purpose).order_by(PromptSet.id.desc())
    ).all()
    evaluations = session.execute(select(Evaluation.id, Evaluation.name).order_by(Evaluation.id.desc())).all()
    return render(request, "exports.html", {
        "prompt_sets": prompt_sets,
        "evaluations": evaluations,
        "rating_columns": RATING_SCHEMA.names,
        "vote_columns": VOTE_SCHEMA.names,
        "attribute_fields": ATTRIBUTES.names,
    })
