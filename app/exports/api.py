"""REST: streamed exports of ratings and comparison votes (JSONL, Parquet, Pick-a-Pic pairs).

Both take the same optional filters; without any, an export holds everything."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BeforeValidator
from sqlalchemy.orm import Session

from app.db.models import Evaluation
from app.deps import ResearcherDep, SessionDep
from app.errors import NotFound
from app.exports import service
from app.exports.service import ExportFilter
from app.fields import INT64_MAX
from app.prompts.service import get_prompt_set_row

router = APIRouter(prefix="/api/v1/exports", tags=["exports"])
MEDIA = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}

# an empty value is "no filter": the exports page's form sends `prompt_set_id=` for "all prompt sets"
_Blank = BeforeValidator(lambda v: None if v == "" else v)
PromptSetFilter = Annotated[int | None, Query(ge=1, le=INT64_MAX, description="only rows of this prompt set; all "
                                                                             "prompt sets if left out or empty"),
                            _Blank]
EvaluationFilter = Annotated[int | None, Query(ge=1, le=INT64_MAX,
                                              description="only votes of this evaluation; all if left out or empty"),
                             _Blank]


def _response(request: Request, what: str, fmt: str, where: ExportFilter) -> StreamingResponse:
    ext = "parquet" if fmt in ("parquet", "pickapic") else "jsonl"
    return StreamingResponse(
        service.stream(request.app.state.sessionmaker, what, fmt, where),
        media_type=MEDIA[ext],
        headers={"content-disposition": f'attachment; filename="{where.name(what)}.{ext}"',
                 "cache-control": "no-store"},
    )


def _check(session: Session, where: ExportFilter) -> None:
    """404 for a filter naming nothing, before the stream starts."""
    if where.prompt_set_id is not None:
        get_prompt_set_row(session, where.prompt_set_id)
    if where.evaluation_id is not None and session.get(Evaluation, where.evaluation_id) is None:
        raise NotFound(f"Evaluation {where.evaluation_id} does not exist.")


@router.get("/ratings")
def export_ratings(request: Request, principal: ResearcherDep, session: SessionDep,
                   prompt_set_id: PromptSetFilter = None,
                   format: Literal["jsonl", "parquet"] = "jsonl") -> StreamingResponse:
    """One row per label (skips included, with their reason)."""
    where = ExportFilter(prompt_set_id=prompt_set_id)
    _check(session, where)
    return _response(request, "ratings", format, where)


@router.get("/votes")
def export_votes(request: Request, principal: ResearcherDep, session: SessionDep,
                 prompt_set_id: PromptSetFilter = None, evaluation_id: EvaluationFilter = None,
                 format: Literal["jsonl", "parquet", "pickapic"] = "jsonl") -> StreamingResponse:
    """One row per vote. `pickapic`: Pick-a-Pic's pair layout (caption, image_0/1, label_0/1), as Parquet."""
    where = ExportFilter(prompt_set_id=prompt_set_id, evaluation_id=evaluation_id)
    _check(session, where)
    return _response(request, "votes", format, where)
