from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.fields import Id

Choice = Literal["left", "right", "tie"]


class PairImage(BaseModel):
    image_url: str = Field(description="the side's first image")
    image_urls: list[str] = Field(default_factory=list,
                                  description="every image of the side, in order (the paper shows 4 a side)")


class ComparisonTask(BaseModel):
    assignment_id: int
    prompt: str
    left: PairImage
    right: PairImage
    lease_expires_at: datetime


class ComparisonTaskBatch(ComparisonTask):
    prefetched: list[ComparisonTask] = Field(default_factory=list)


class VoteSubmit(BaseModel):
    assignment_id: Id
    alignment: Choice = Field(description="which image follows the text better")
    fidelity: Choice = Field(description="which image looks better")
    duration_ms: int | None = Field(None, ge=0, le=24 * 3600 * 1000)


class VoteRead(BaseModel):
    assignment_id: int
    alignment: Choice
    fidelity: Choice
    duration_ms: int | None
    created_at: datetime


class ComparisonCreate(BaseModel):
    image_a_id: Id = Field(description="baseline side")
    image_b_id: Id = Field(description="candidate side")
    evaluation_id: Id | None = None
    votes_wanted: int | None = Field(None, ge=1, le=100, description="default: the evaluation's or 9")
    gold_alignment: Literal["a", "b", "tie"] | None = None
    gold_fidelity: Literal["a", "b", "tie"] | None = None

    @model_validator(mode="after")
    def _distinct(self) -> ComparisonCreate:
        if self.image_a_id == self.image_b_id:
            raise ValueError("image_a_id and image_b_id must be two different images")
        return self


class ComparisonGoldUpdate(BaseModel):
    gold_alignment: Literal["a", "b", "tie"] | None = None
    gold_fidelity: Literal["a", "b", "tie"] | None = None


class ComparisonRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    evaluation_id: int | None
    prompt_id: int
    image_a_id: int
    image_b_id: int
    votes_wanted: int
    votes_open: int
    gold_alignment: str | None
    gold_fidelity: str | None
    created_at: datetime
