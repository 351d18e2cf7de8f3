"""REST: model versions with their lineage and metrics."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ModelVersion
from app.deps import ResearcherDep, SessionDep
from app.errors import NotFound
from app.models.schemas import ModelVersionDetail, ModelVersionRead

router = APIRouter(prefix="/api/v1/models", tags=["models"])


def lineage(session: Session, version: ModelVersion) -> list[ModelVersion]:
    chain, seen, parent_id = [], {version.id}, version.parent_id
    while parent_id is not None and parent_id not in seen:
        parent = session.get(ModelVersion, parent_id)
        if parent is None:
            break
        chain.append(parent)
        seen.add(parent.id)
        parent_id = parent.parent_id
    return chain


@router.get("", response_model=list[ModelVersionRead])
def list_models(principal: ResearcherDep, session: SessionDep, kind: Literal["generator", "reward"] | None = None,
                prompt_set_id: int | None = None) -> list[ModelVersionRead]:
    query = select(ModelVersion).order_by(ModelVersion.id)
    if kind:
        query = query.where(ModelVersion.kind == kind)
    if prompt_set_id is not None:
        query = query.where(ModelVersion.prompt_set_id == prompt_set_id)
    return [ModelVersionRead.model_validate(m) for m in session.scalars(query)]


@router.get("/{model_id}", response_model=ModelVersionDetail)
def get_model(model_id: int, principal: ResearcherDep, session: SessionDep) -> ModelVersionDetail:
    version = session.get(ModelVersion, model_id)
    if version is None:
        raise NotFound(f"Model version {model_id} does not exist.")
    out = ModelVersionDetail.model_validate(version)
    out.lineage = [ModelVersionRead.model_validate(m) for m in lineage(session, version)]
    out.children = list(session.scalars(select(ModelVersion.id).where(ModelVersion.parent_id == version.id)))
    return out
