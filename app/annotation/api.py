"""REST for annotators (and bots): next task, submit, undo, own stats; gold accuracy for researchers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Form, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from app.annotation import leases, progress, quality, ratings
from app.annotation.schemas import (
    AnnotatorStats,
    GoldAccuracy,
    LeasesReleased,
    PoolProgress,
    PoolWaiting,
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
    ComparisonTask,
    ComparisonTaskBatch,
    VoteRead,
    VoteSubmit,
)
from app.deps import AnnotatorDep, ResearcherDep, SessionDep, SettingsDep, is_json
from app.errors import UnsupportedMediaType
from app.fields import Int64
from app.images import service as images

M = TypeVar("M", bound=BaseModel)

router = APIRouter(prefix="/api/v1", tags=["annotation"])

Prefetch = Annotated[int, Query(ge=1, le=ratings.MAX_PREFETCH, description="lease up to this many at once")]


class _NextQuery(BaseModel):
    # any BIGINT: an id that names no set (0, -1) finds nothing (204), here as on the hot path
    prompt_set_id: Int64 | None = None
    prefetch: int = Field(1, ge=1, le=ratings.MAX_PREFETCH, description="lease up to this many at once")


def _invalid(errors: list[Any], where: str) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": (where, *e.get("loc", ()))} for e in errors])


def _parse_query(request: Request) -> _NextQuery:
    try:
        return _NextQuery.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise _invalid(exc.errors(include_url=False), "query") from None


def _parse_body(raw: bytes, model: type[M], content_type: str | None) -> M:
    """FastAPI's JSON body handling, run after the caller was checked (401/403 before 422).
    A JSON body is read whatever its content type says (some clients mislabel it); a body that is
    not JSON and says it is something else is refused as that media type (415)."""
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required",
                                       "input": None}])
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if not is_json(content_type):
            raise UnsupportedMediaType(f"Send the body as JSON (Content-Type: application/json), "
                                       f"not {(content_type or '').split(';')[0].strip()}.") from None
        if isinstance(exc, UnicodeDecodeError):
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": "not UTF-8",
                                           "input": {}}]) from None
        error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error", "input": {},
                 "ctx": {"error": exc.msg}}
        raise RequestValidationError([error]) from None
    except RecursionError:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "input": {},
                                       "msg": "nested too deeply to be read"}]) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc.errors(include_url=False), "body") from None


def _json(model: BaseModel, status_code: int = 200) -> Response:
    return Response(model.__pydantic_serializer__.to_json(model), status_code=status_code,
                    media_type="application/json")


_NEXT_PARAMS = [
    {"name": "prompt_set_id", "in": "query", "required": False,
     "schema": {"anyOf": [{"type": "integer"}, {"type": "null"}], "title": "Prompt Set Id"}},
    {"name": "prefetch", "in": "query", "required": False, "description": "lease up to this many at once",
     "schema": {"type": "integer", "maximum": ratings.MAX_PREFETCH, "minimum": 1, "default": 1,
                "title": "Prefetch", "description": "lease up to this many at once"}},
]


async def _raw_body(request: Request) -> bytes:
    """The body, read before the caller is checked (a form's CSRF field is then parsed from this
    copy) and validated after it (401 / 403 before 422)."""
    return await request.body()


RawBody = Annotated[bytes, Depends(_raw_body)]


# The hot path (hotpath.py) answers the common case of these two on Postgres; everything it hands
# over, and every call elsewhere, is answered here by the portable engine. Parameters are
# documented in OpenAPI as before and validated after the caller.
@router.get("/rating-tasks/next", response_model=RatingTaskBatch,
            responses={204: {"description": "nothing left for this annotator"},
                       422: {"description": "Validation Error",
                             "content": {"application/json": {"schema": {
                                 "$ref": "#/components/schemas/HTTPValidationError"}}}}},
            openapi_extra={"parameters": _NEXT_PARAMS})
def next_rating_task(request: Request, principal: AnnotatorDep, session: SessionDep, settings: SettingsDep
                     ) -> Response:
    q = _parse_query(request)
    tasks = ratings.next_tasks(session, settings, principal.user, prompt_set_id=q.prompt_set_id,
                               prefetch=q.prefetch, sweep_interval=settings.lease_sweep_seconds,
                               rng=request.app.state.annotation_rng,
                               draws=getattr(request.state, "lease_draws", None))  # drawn by the hot path
    if not tasks:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return _json(ratings.as_batch(tasks))


@router.post("/ratings", response_model=RatingRead, status_code=status.HTTP_201_CREATED,
             responses={200: {"description": "identical repeat: the stored answer"},
                        409: {"description": "a different answer was stored, or the lease was lost"},
                        422: {"description": "Validation Error",
                              "content": {"application/json": {"schema": {
                                  "$ref": "#/components/schemas/HTTPValidationError"}}}}},
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": RatingSubmit.model_json_schema()}}}})
def submit_rating(raw: RawBody, request: Request, principal: AnnotatorDep, session: SessionDep) -> Response:
    body = _parse_body(raw, RatingSubmit, request.headers.get("content-type"))
    rating, created = ratings.submit(session, principal.user, body)
    return _json(rating, 201 if created else 200)


@router.get("/ratings/{assignment_id}", response_model=RatingRead,
            responses={404: {"description": "no answer of yours on this assignment"}})
def stored_rating(assignment_id: int, principal: AnnotatorDep, session: SessionDep) -> RatingRead:
    """Your stored answer on an assignment (a page shows it when another tab answered first)."""
    return ratings.stored_answer(session, principal.user, assignment_id)


@router.post("/ratings/{assignment_id}/undo", response_model=RatingTask)
def undo_rating(assignment_id: int, principal: AnnotatorDep, session: SessionDep) -> RatingTask:
    return ratings.undo(session, principal.user, assignment_id)


@router.get("/comparison-tasks/next", response_model=ComparisonTaskBatch,
            responses={204: {"description": "nothing left for this annotator"}})
def next_comparison_task(request: Request, principal: AnnotatorDep, session: SessionDep, settings: SettingsDep,
                         evaluation_id: int | None = None, prefetch: Prefetch = 1
                         ) -> Response | ComparisonTaskBatch:
    """On Postgres the hot path (hotpath.py) answers the common case before this route runs."""
    tasks = comparisons.next_tasks(session, settings, principal.user, evaluation_id=evaluation_id,
                                   prefetch=prefetch, sweep_interval=settings.lease_sweep_seconds,
                                   rng=request.app.state.annotation_rng,
                                   draws=getattr(request.state, "lease_draws", None))
    if not tasks:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return comparisons.as_batch(tasks)


@router.get("/comparison-tasks/{assignment_id}/images/{side}", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def comparison_task_image(assignment_id: int, side: Literal["left", "right"], principal: AnnotatorDep,
                          session: SessionDep, settings: SettingsDep) -> Response:
    """The image on one side of your comparison task (the URLs a task gives: blind to the model)."""
    return images.file_response(settings, comparisons.pair_image(session, principal.user, assignment_id, side))


@router.get("/comparison-tasks/{assignment_id}/images/{side}/{index}", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def comparison_task_side_image(assignment_id: int, side: Literal["left", "right"], index: int,
                               principal: AnnotatorDep, session: SessionDep, settings: SettingsDep) -> Response:
    """Image `index` (from 0) of one side of your comparison task: a query shows several a side (the
    paper's 4 against 4); the task's `image_urls` list them."""
    return images.file_response(settings, comparisons.pair_image(session, principal.user, assignment_id, side, index))


@router.post("/comparison-votes", response_model=VoteRead, status_code=status.HTTP_201_CREATED,
             responses={200: {"description": "identical repeat: the stored vote"}})
def submit_vote(body: VoteSubmit, principal: AnnotatorDep, session: SessionDep) -> Response:
    vote, created = comparisons.submit_vote(session, principal.user, body)
    return JSONResponse(vote.model_dump(mode="json"), status_code=201 if created else 200)


@router.post("/comparison-votes/{assignment_id}/undo", response_model=ComparisonTask,
             responses={409: {"description": "no vote to undo, or the time on the pair ran out"}})
def undo_vote(assignment_id: int, principal: AnnotatorDep, session: SessionDep) -> ComparisonTask:
    """Withdraw your vote on a pair while your time on it runs: the pair comes back to you, same sides."""
    return comparisons.undo_vote(session, principal.user, assignment_id)


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


@router.get("/me/progress", response_model=PoolProgress)
def my_progress(principal: AnnotatorDep, session: SessionDep, kind: Literal["ratings", "votes"] = "ratings",
                prompt_set_id: Annotated[Int64 | None, Query(description="ratings: only this prompt set")] = None,
                evaluation_id: Annotated[Int64 | None, Query(description="votes: only this evaluation")] = None,
                ) -> PoolProgress:
    """The pool the caller's page works on: labels or votes wanted, done, left, and the caller's share."""
    return progress.pool(session, principal.user.id, kind, prompt_set_id=prompt_set_id, evaluation_id=evaluation_id)


@router.get("/me/waiting", response_model=PoolWaiting)
def my_waiting(principal: AnnotatorDep, session: SessionDep, kind: Literal["ratings", "votes"] = "ratings",
               prompt_set_id: Annotated[Int64 | None, Query(description="ratings: only this prompt set")] = None,
               evaluation_id: Annotated[Int64 | None, Query(description="votes: only this evaluation")] = None,
               ) -> PoolWaiting:
    """Why `next` answered 204: images still being generated, items other annotators hold (and when
    the first of those leases runs out), or nothing left at all."""
    return progress.waiting(session, principal.user.id, kind, prompt_set_id=prompt_set_id,
                            evaluation_id=evaluation_id)


@router.post("/leases/release", response_model=LeasesReleased)
def release_leases(principal: AnnotatorDep, session: SessionDep,
                   rating_assignment_id: Annotated[list[Int64] | None, Form()] = None,
                   comparison_assignment_id: Annotated[list[Int64] | None, Form()] = None,
                   ) -> LeasesReleased:
    """Hand back your unanswered leases (a form, so that a page going away can send it with
    navigator.sendBeacon; a session cookie needs its `csrf_token` field). Answered or foreign
    assignments are left alone."""
    return LeasesReleased(
        ratings=leases.release(session, leases.RATING, principal.user.id, rating_assignment_id or []),
        comparisons=leases.release(session, leases.COMPARISON, principal.user.id, comparison_assignment_id or []))


@router.get("/annotators/gold-accuracy", response_model=list[GoldAccuracy])
def gold_accuracy(principal: ResearcherDep, session: SessionDep) -> list[GoldAccuracy]:
    return quality.gold_accuracy(session)
