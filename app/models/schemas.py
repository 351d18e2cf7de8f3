from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.fields import Id, JsonDoc, OptionalText, Text


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


class ModelVersionCreate(BaseModel):
    """Register a version trained outside the job system (e.g. a multi-GPU `accelerate launch`)."""

    kind: Literal["generator", "reward"]
    mode: Literal["base", "full", "lora", "mlp"]
    name: Text = Field(min_length=1, max_length=200)
    artifact_url: Text = Field(min_length=1, max_length=2000, description="folder, storage URL or hub id")
    parent_id: Id | None = None
    prompt_set_id: Id | None = None
    base_model: OptionalText = Field(None, max_length=2000, description="for mode lora: the model it adapts")
    hyperparams: JsonDoc = Field(default_factory=dict)
    label_snapshot: JsonDoc = Field(default_factory=dict)
    metrics: JsonDoc = Field(default_factory=dict)
    code_version: Text = Field("", max_length=64)

    @model_validator(mode="after")
    def _consistent(self) -> ModelVersionCreate:
        if self.kind == "reward" and self.mode != "mlp":
            raise ValueError("a reward version has mode 'mlp'")
        if self.kind == "generator" and self.mode == "mlp":
            raise ValueError("a generator version has mode base, full or lora")
        if self.mode == "lora" and not self.base_model:
            raise ValueError("base_model is required for a LoRA adapter")
        return self
