from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class Interval(BaseModel):
    low: float
    high: float


class OutcomeShare(BaseModel):
    """Share of complete queries with this outcome, and its 95% Wilson interval."""

    count: int
    share: float | None
    ci95: Interval | None


class QuestionResult(BaseModel):
    """One question (alignment or fidelity) over a group of queries.

    `win` / `tie` / `loss` are from the candidate's side (image b) by simple majority of the
    votes; `agreed_*` count queries where at least `agreement_threshold` raters chose the same
    answer (the paper's 7 of 9)."""

    queries: int = Field(description="complete queries (all wanted votes in)")
    win: OutcomeShare
    tie: OutcomeShare
    loss: OutcomeShare
    agreed_win: OutcomeShare
    agreed_tie: OutcomeShare
    agreed_loss: OutcomeShare
    no_agreement: OutcomeShare


class GroupResult(BaseModel):
    group: str = Field(description="'all', a category, or 'seen' / 'unseen'")
    alignment: QuestionResult
    fidelity: QuestionResult


class EvaluationRead(BaseModel):
    id: int
    name: str
    prompt_set_id: int
    job_id: int | None
    baseline_version_id: int | None
    candidate_version_id: int | None
    candidate_kind: str
    votes_per_comparison: int
    agreement_threshold: int
    params: dict[str, Any]
    created_at: datetime
    comparisons: int
    complete: int
    votes: int
    results: list[GroupResult] = Field(default_factory=list)
    oracle: dict[str, Any] | None = Field(
        None, description="shapes-world models only: what the pixel oracle measured of both sides' images "
                          "(aligned share per side, overall and per category, and the paired gain with its "
                          "standard error), with a sentence saying what it means")
