from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ModelVersionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    name: str
    mode: str
    parent_id: int | None
    job_id: int | None
    prompt_set_id: int | None
    artifact_url: str
    hyperparams: dict[str, Any]
    label_snapshot: dict[str, Any]
    code_version: str
    metrics: dict[str, Any]
    created_at: datetime


class ModelVersionDetail(ModelVersionRead):
    lineage: list[ModelVersionRead] = Field(default_factory=list, description="parents, nearest first")
    children: list[int] = Field(default_factory=list)
