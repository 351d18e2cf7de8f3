"""REST for annotators (and bots): next task, submit, undo, own stats; gold accuracy for researchers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import JSONResponse

from app.annotation import quality, ratings
from app.annotation.schemas import (
    AnnotatorStats,
    GoldAccuracy,
    RatingRead,
    RatingSubmit,
    RatingTask,
    RatingTaskBatch,
)
from app.comparisons import service as comparisons
from app.comparisons.schemas import (
    ComparisonCreate,
    ComparisonGoldUpdate,
    ComparisonRead,
    ComparisonTaskBatch,
    VoteRead,
    VoteSubmit,
)
from app.deps import AnnotatorDep, ResearcherDep, SessionDep, SettingsDep

router = APIRouter(prefix="/api/v1", tags=["annotation"])

Prefetch = Annotated[int, Query(ge=1, le=ratings.MAX_PREFETCH, description="lease up to this many at once")]


@router.get("/rating-tasks/next", response_model=RatingTaskBatch,
            responses={204: {"description": "nothing left for this annotator"}})
def next_rating_task(principal: AnnotatorDep, session: SessionDep, settings: SettingsDep,
                     prompt_set_id: int | None = None, prefetch: Prefetch = 1) -> Response | RatingTaskBatch:
    tasks = ratings.next_tasks(session, settings, principal.user, prompt_set_id=prompt_set_id, prefetch=prefetch,
                               sweep_interval=settings.lease_sweep_seconds)
    if not tasks:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return ratings.as_batch(tasks)


@router.post("/ratings", response_model=RatingRead, status_code=status.HTTP_201_CREATED,
             responses={200: {"description": "identical repeat: the stored answer"},
                        409: {"description": "a different answer was stored, or the lease was lost"}})
def submit_rating(body: RatingSubmit, principal: AnnotatorDep, session: SessionDep) -> Response:
    rating, created = ratings.submit(session, principal.user, body)
    return JSONResponse(rating.model_dump(mode="json"), status_code=201 if created else 200)


@router.post("/ratings/{assignment_id}/undo", response_model=RatingTask)
def undo_rating(assignment_id: int, principal: AnnotatorDep, session: SessionDep) -> RatingTask:
    return ratings.undo(session, principal.user, assignment_id)


@router.get("/comparison-tasks/next", response_model=ComparisonTaskBatch,
            responses={204: {"description": "nothing left for this annotator"}})
def next_comparison_task(principal: AnnotatorDep, session: SessionDep, settings: SettingsDep,
                         evaluation_id: int | None = None, prefetch: Prefetch = 1
                         ) -> Response | ComparisonTaskBatch:
    tasks = comparisons.next_tasks(session, settings, principal.user, evaluation_id=evaluation_id,
                                   prefetch=prefetch, sweep_interval=settings.lease_sweep_seconds)
    if not tasks:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return comparisons.as_batch(tasks)


@router.post("/comparison-votes", response_model=VoteRead, status_code=status.HTTP_201_CREATED,
             responses={200: {"description": "identical repeat: the stored vote"}})
def submit_vote(body: VoteSubmit, principal: AnnotatorDep, session: SessionDep) -> Response:
    vote, created = comparisons.submit_vote(session, principal.user, body)
    return JSONResponse(vote.model_dump(mode="json"), status_code=201 if created else 200)


@router.post("/comparisons", response_model=ComparisonRead, status_code=status.HTTP_201_CREATED)
def create_comparison(body: ComparisonCreate, principal: ResearcherDep, session: SessionDep,
                      settings: SettingsDep) -> ComparisonRead:
    return comparisons.create_comparison(session, settings, body)


@router.patch("/comparisons/{comparison_id}", response_model=ComparisonRead)
def mark_comparison_gold(comparison_id: int, body: ComparisonGoldUpdate, principal: ResearcherDep,
                         session: SessionDep) -> ComparisonRead:
    return comparisons.set_gold(session, comparison_id, body)


@router.get("/me/stats", response_model=AnnotatorStats)
def my_stats(principal: AnnotatorDep, session: SessionDep,
             since: Annotated[datetime | None, Query(description="start of 'today' (default: UTC midnight)")] = None
             ) -> AnnotatorStats:
    if since is None:
        now = datetime.now(UTC)
        since = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elif since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return quality.stats(session, principal.user.id, since)


@router.get("/annotators/gold-accuracy", response_model=list[GoldAccuracy])
def gold_accuracy(principal: ResearcherDep, session: SessionDep) -> list[GoldAccuracy]:
    return quality.gold_accuracy(session)
