"""REST: model versions with their lineage and metrics."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ModelVersion, PromptSet
from app.deps import ResearcherDep, SessionDep
from app.errors import Invalid, NotFound
from app.models.schemas import ModelVersionCreate, ModelVersionDetail, ModelVersionRead

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


@router.post("", response_model=ModelVersionRead, status_code=status.HTTP_201_CREATED)
def register_model(body: ModelVersionCreate, principal: ResearcherDep, session: SessionDep) -> ModelVersionRead:
    if body.parent_id is not None:
        parent = session.get(ModelVersion, body.parent_id)
        if parent is None or parent.kind != body.kind:
            raise Invalid(f"parent_id: no {body.kind} version {body.parent_id}")
    if body.prompt_set_id is not None and session.get(PromptSet, body.prompt_set_id) is None:
        raise Invalid(f"prompt_set_id: prompt set {body.prompt_set_id} does not exist")
    hyperparams = dict(body.hyperparams)
    if body.base_model:
        hyperparams["base_model"] = body.base_model
    version = ModelVersion(kind=body.kind, mode=body.mode, name=body.name, artifact_url=body.artifact_url,
                           parent_id=body.parent_id, prompt_set_id=body.prompt_set_id, hyperparams=hyperparams,
                           label_snapshot=body.label_snapshot, metrics=body.metrics,
                           code_version=body.code_version or f"registered by {principal.user.username}"[:64])
    session.add(version)
    session.flush()
    return ModelVersionRead.model_validate(version)
