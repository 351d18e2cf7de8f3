"""REST: evaluation results (per category and seen/unseen, win/tie/loss with 95% intervals)."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import ResearcherDep, SessionDep
from app.evaluations import service
from app.evaluations.schemas import EvaluationRead

router = APIRouter(prefix="/api/v1/evaluations", tags=["evaluations"])


@router.get("", response_model=list[EvaluationRead])
def list_evaluations(principal: ResearcherDep, session: SessionDep, prompt_set_id: int | None = None
                     ) -> list[EvaluationRead]:
    return service.list_evaluations(session, prompt_set_id)


@router.get("/{evaluation_id}", response_model=EvaluationRead)
def get_evaluation(evaluation_id: int, principal: ResearcherDep, session: SessionDep) -> EvaluationRead:
    return service.evaluation_results(session, evaluation_id)
