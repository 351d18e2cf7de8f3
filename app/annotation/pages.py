"""The annotator's pages: rate images (/annotate) and compare pairs (/compare).

The pages are shells; their tasks come from the JSON API (app/annotation/api.py), so the browser
can prefetch, retry and undo without a page load. Nothing task-specific is rendered here, which
also keeps untrusted prompt text out of the server-side templates entirely.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.deps import AnnotatorDep
from app.fields import Id
from app.web import render

router = APIRouter(include_in_schema=False)

OptionalId = Annotated[Id | None, Query()]


@router.get("/annotate", response_class=HTMLResponse)
def annotate(request: Request, principal: AnnotatorDep, prompt_set_id: OptionalId = None) -> Response:
    return render(request, "annotation/annotate.html", {"prompt_set_id": prompt_set_id})


@router.get("/compare", response_class=HTMLResponse)
def compare(request: Request, principal: AnnotatorDep, evaluation_id: OptionalId = None) -> Response:
    return render(request, "annotation/compare.html", {"evaluation_id": evaluation_id})
