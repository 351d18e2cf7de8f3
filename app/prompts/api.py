"""REST: prompt sets (researchers create and change them; annotators may read progress)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from app.deps import ResearcherDep, SessionDep, SettingsDep
from app.prompts import service
from app.prompts.schemas import PromptRead, PromptSetCreate, PromptSetRead, PromptSetUpdate

router = APIRouter(prefix="/api/v1/prompt-sets", tags=["prompt sets"])


@router.post("", response_model=PromptSetRead, status_code=status.HTTP_201_CREATED)
def create_prompt_set(body: PromptSetCreate, principal: ResearcherDep, session: SessionDep,
                      settings: SettingsDep) -> PromptSetRead:
    return service.create_prompt_set(session, settings, body, creator=principal.user)


@router.get("", response_model=list[PromptSetRead])
def list_prompt_sets(principal: ResearcherDep, session: SessionDep) -> list[PromptSetRead]:
    return service.list_prompt_sets(session)


@router.get("/{prompt_set_id}", response_model=PromptSetRead)
def get_prompt_set(prompt_set_id: int, principal: ResearcherDep, session: SessionDep) -> PromptSetRead:
    return service.read_prompt_set(session, prompt_set_id)


@router.patch("/{prompt_set_id}", response_model=PromptSetRead)
def update_prompt_set(prompt_set_id: int, body: PromptSetUpdate, principal: ResearcherDep,
                      session: SessionDep) -> PromptSetRead:
    return service.update_prompt_set(session, prompt_set_id, body)


@router.get("/{prompt_set_id}/prompts", response_model=list[PromptRead])
def list_prompts(
    prompt_set_id: int,
    principal: ResearcherDep,
    session: SessionDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[PromptRead]:
    return service.list_prompts(session, prompt_set_id, offset, limit)
