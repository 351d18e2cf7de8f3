"""REST: streamed exports of ratings and comparison votes (JSONL, Parquet, Pick-a-Pic pairs)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from app.db.models import Evaluation
from app.deps import ResearcherDep, SessionDep
from app.errors import NotFound
from app.exports import service
from app.prompts.service import get_prompt_set_row

router = APIRouter(prefix="/api/v1/exports", tags=["exports"])
MEDIA = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


def _response(request: Request, what: str, fmt: str, scope_id: int | None, name: str) -> StreamingResponse:
    ext = "parquet" if fmt in ("parquet", "pickapic") else "jsonl"
    return StreamingResponse(
        service.stream(request.app.state.sessionmaker, what, fmt, scope_id),
        media_type=MEDIA[ext],
        headers={"content-disposition": f'attachment; filename="{name}.{ext}"', "cache-control": "no-store"},
    )


@router.get("/ratings")
def export_ratings(request: Request, principal: ResearcherDep, session: SessionDep, prompt_set_id: int,
                   format: Literal["jsonl", "parquet"] = "jsonl") -> StreamingResponse:
    get_prompt_set_row(session, prompt_set_id)  # 404 before the stream starts
    return _response(request, "ratings", format, prompt_set_id, f"ratings-prompt-set-{prompt_set_id}")


@router.get("/votes")
def export_votes(request: Request, principal: ResearcherDep, session: SessionDep, evaluation_id: int | None = None,
                 format: Literal["jsonl", "parquet", "pickapic"] = "jsonl") -> StreamingResponse:
    """`pickapic`: one row per vote in Pick-a-Pic's pair layout (caption, image_0/1, label_0/1), as Parquet."""
    if evaluation_id is not None and session.get(Evaluation, evaluation_id) is None:
        raise NotFound(f"Evaluation {evaluation_id} does not exist.")
    scope = f"evaluation-{evaluation_id}" if evaluation_id is not None else "all"
    return _response(request, "votes", format, evaluation_id, f"votes-{scope}")
