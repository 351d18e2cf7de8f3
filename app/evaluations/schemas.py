from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class Interval(BaseModel):
    low: float
    high: float


class OutcomeShare(BaseModel):
    """Share of complete queries with this outcome, and its 95% Wilson interval."""

    count: int
    share: float | None
    ci95: Interval | None


Verdict = Literal["candidate better", "no detectable difference", "baseline better"]


class QuestionResult(BaseModel):
    """One question (alignment or fidelity) over a group of queries.

    `win` / `tie` / `loss` are from the candidate's side (image b) by simple majority of the
    votes; `agreed_*` count queries where at least `agreement_threshold` raters chose the same
    answer (the paper's 7 of 9).

    `verdict` says whether the difference is real: among the decisive queries (won or lost, ties
    left out) the candidate's share with its 95% Wilson interval (`decisive`); an interval wholly
    above one half is "candidate better", wholly below "baseline better", otherwise "no detectable
    difference" (too few pairs, or too even, to tell)."""

    queries: int = Field(description="complete queries (all wanted votes in)")
    win: OutcomeShare
    tie: OutcomeShare
    loss: OutcomeShare
    agreed_win: OutcomeShare
    agreed_tie: OutcomeShare
    agreed_loss: OutcomeShare
    no_agreement: OutcomeShare
    agreed: OutcomeShare = Field(description="queries where at least `agreement_threshold` raters chose the same "
                                             "answer, whichever it was (the paper's headline figure)")
    decisive: OutcomeShare = Field(description="wins among won + lost queries, with the interval the verdict reads")
    verdict: Verdict | None = Field(description="None while no query is complete")


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
