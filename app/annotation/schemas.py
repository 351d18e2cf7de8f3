from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.fields import Id, OptionalText
from app.prompts.schemas import Highlight


class RatingTask(BaseModel):
    assignment_id: int
    image_id: int
    image_url: str
    prompt: str
    prompt_set_id: int
    category: str
    highlights: list[Highlight] = []
    lease_expires_at: datetime


class RatingTaskBatch(RatingTask):
    prefetched: list[RatingTask] = Field(default_factory=list,
                                         description="further leased tasks, with ?prefetch=N > 1")


class RatingSubmit(BaseModel):
    assignment_id: Id
    label: Literal["good", "bad", "skip"]
    duration_ms: int | None = Field(None, ge=0, le=24 * 3600 * 1000, description="time on item")
    skip_reason: OptionalText = Field(None, max_length=500)


class RatingRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    assignment_id: int
    image_id: int
    label: str
    skip_reason: str | None
    duration_ms: int | None
    created_at: datetime


class AnnotatorStats(BaseModel):
    ratings_today: int
    ratings_total: int
    votes_today: int
    votes_total: int
    since: datetime


class GoldAccuracy(BaseModel):
    annotator_id: int
    username: str
    pseudonym: str
    rating_gold_answered: int
    rating_gold_correct: int
    rating_gold_accuracy: float | None
    comparison_gold_answered: int
    comparison_gold_correct: int
    comparison_gold_accuracy: float | None


class PoolProgress(BaseModel):
    """How far the pool an annotator works on has come, and their part in it."""

    kind: Literal["ratings", "votes"]
    prompt_set_id: int | None = Field(description="the prompt set the page is limited to; None: every set")
    evaluation_id: int | None = Field(description="the evaluation the page is limited to; None: every evaluation")
    wanted: int = Field(description="labels (good/bad on non-gold images) or votes the pool asks for")
    done: int = Field(description="of those, given so far by anyone")
    left: int = Field(description="wanted - done: still to give (by anyone; nobody labels an image twice)")
    mine: int = Field(description="given by the caller")
    my_share: float | None = Field(description="mine / done; None while nothing is done")


class PoolWaiting(BaseModel):
    """Why `next` has nothing for the caller right now, so that the page says what is true."""

    kind: Literal["ratings", "votes"]
    generating: int = Field(description="images (ratings) still to come from generation jobs queued or running")
    jobs: int = Field(description="generation (ratings) or evaluation (votes) jobs queued or running for this pool")
    held_by_others: int = Field(description="items the caller could answer that other annotators hold leases on")
    next_back_at: datetime | None = Field(description="when the first of those leases runs out")
    answerable: int = Field(description="items open to the caller right now (a `next` call would hand them out)")


class LeasesReleased(BaseModel):
    ratings: int = Field(description="rating leases handed back")
    comparisons: int = Field(description="comparison leases handed back")
