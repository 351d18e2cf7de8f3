"""Evaluation pages: results as stacked bars, the pairs behind them, and each pair's votes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.admin.charts import Segment, stacked
from app.db.models import (
    Comparison,
    ComparisonAssignment,
    ComparisonVote,
    Evaluation,
    ModelVersion,
    Prompt,
    User,
)
from app.errors import NotFound
from app.evaluations.schemas import EvaluationRead, QuestionResult
from app.evaluations.service import comparison_tallies, evaluation_results

PAIR_LIST_LIMIT = 500


def outcome_bar(q: QuestionResult) -> list[Segment]:
    """Win / tie / loss of the candidate as a 100% stacked bar (as in the paper's figure)."""
    return stacked([("win", "win", q.win.count), ("tie", "tie", q.tie.count), ("loss", "loss", q.loss.count)])


def list_evaluations(session: Session) -> list[EvaluationRead]:
    return [
        evaluation_results(session, i)
        for i in session.scalars(select(Evaluation.id).order_by(Evaluation.id.desc()))
    ]


@dataclass
class PairRow:
    comparison: Comparison
    prompt: Prompt
    tallies: dict[str, dict[str, int]]

    @property
    def votes(self) -> int:
        return sum(self.tallies.get("alignment", {}).values())


def evaluation_page(session: Session, evaluation_id: int) -> dict[str, Any]:
    result = evaluation_results(session, evaluation_id)  # raises NotFound
    tallies = comparison_tallies(session, evaluation_id)
    pairs = [
        PairRow(c, p, tallies.get(c.id, {"alignment": {}, "fidelity": {}}))
        for c, p in session.execute(
            select(Comparison, Prompt)
            .join(Prompt, Prompt.id == Comparison.prompt_id)
            .where(Comparison.evaluation_id == evaluation_id)
            .order_by(Comparison.id)
            .limit(PAIR_LIST_LIMIT)
        )
    ]
    names = _version_names(session, [result.baseline_version_id, result.candidate_version_id])
    return {
        "ev": result,
        "pairs": pairs,
        "pair_limit": PAIR_LIST_LIMIT,
        "versions": names,
        "bars": {
            r.group: {"alignment": outcome_bar(r.alignment), "fidelity": outcome_bar(r.fidelity)}
            for r in result.results
        },
    }


def _version_names(session: Session, ids: list[int | None]) -> dict[int, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return dict(
        session.execute(select(ModelVersion.id, ModelVersion.name).where(ModelVersion.id.in_(wanted))).all()
    )


SIDE_WORDS = {"a": "baseline", "b": "candidate", "tie": "tie"}


def seen_side(answer: str, left_is_a: bool) -> str:
    """An answer stored in a/b terms, as the rater saw it: left, right or tie."""
    if answer == "tie":
        return "tie"
    return "left" if (answer == "a") == left_is_a else "right"


@dataclass
class VoteRow:
    pseudonym: str
    left_is_a: bool
    alignment: str
    fidelity: str
    duration_ms: int | None

    @property
    def left_model(self) -> str:
        return "baseline" if self.left_is_a else "candidate"

    def seen(self, answer: str) -> str:
        return seen_side(answer, self.left_is_a)

    @staticmethod
    def model(answer: str) -> str:
        return SIDE_WORDS.get(answer, answer)


def comparison_page(session: Session, comparison_id: int) -> dict[str, Any]:
    row = session.execute(
        select(Comparison, Prompt)
        .join(Prompt, Prompt.id == Comparison.prompt_id)
        .where(Comparison.id == comparison_id)
    ).first()
    if row is None:
        raise NotFound(f"Comparison {comparison_id} does not exist.")
    comparison, prompt = row
    votes = [
        VoteRow(pseudonym, left_is_a, alignment, fidelity, duration)
        for pseudonym, left_is_a, alignment, fidelity, duration in session.execute(
            select(
                User.pseudonym,
                ComparisonAssignment.left_is_a,
                ComparisonVote.alignment,
                ComparisonVote.fidelity,
                ComparisonVote.duration_ms,
            )
            .join(ComparisonAssignment, ComparisonAssignment.id == ComparisonVote.assignment_id)
            .join(User, User.id == ComparisonVote.annotator_id)
            .where(ComparisonVote.comparison_id == comparison_id)
            .order_by(ComparisonVote.id)
        )
    ]
    evaluation = session.get(Evaluation, comparison.evaluation_id) if comparison.evaluation_id else None
    return {"comparison": comparison, "prompt": prompt, "votes": votes, "evaluation": evaluation}
