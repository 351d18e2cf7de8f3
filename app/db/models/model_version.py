"""Generator and reward model versions with their lineage, and per-image reward scores."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigIntPK, CreatedAtMixin, IdMixin, one_of
from app.db.enums import ModelKind, values


class ModelVersion(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "model_version"
    __table_args__ = (
        one_of("kind", values(ModelKind)),
        one_of("mode", ("base", "full", "lora", "mlp")),
        # a job makes at most one version, so a re-run of the job cannot add a second one
        UniqueConstraint("job_id"),
        Index("ix_model_version_kind_prompt_set_id", "kind", "prompt_set_id"),
        CheckConstraint("parent_id IS NULL OR parent_id <> id", name="not_own_parent"),
    )

    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(8), default="base")
    parent_id: Mapped[int | None] = mapped_column(
        BigIntPK, ForeignKey("model_version.id", ondelete="SET NULL")
    )
    job_id: Mapped[int | None] = mapped_column(BigIntPK, ForeignKey("job.id", ondelete="SET NULL"))
    # the prompt set whose labels trained it (reward) or that it was tuned on (generator)
    prompt_set_id: Mapped[int | None] = mapped_column(
        BigIntPK, ForeignKey("prompt_set.id", ondelete="SET NULL")
    )
    # where the weights live: storage URL of a pipeline / adapter / reward folder, or a hub id
    artifact_url: Mapped[str] = mapped_column(Text)
    hyperparams: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # which labels trained it: {"prompt_set_id": 1, "max_rating_id": 9312, "count": 2810, ...}
    label_snapshot: Mapped[dict[str, Any]] = mapped_column(default=dict)
    code_version: Mapped[str] = mapped_column(String(64), default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)


class RewardScore(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "reward_score"
    __table_args__ = (
        UniqueConstraint("image_id", "reward_version_id"),
        Index("ix_reward_score_reward_version_id", "reward_version_id"),
        CheckConstraint("score >= 0 AND score <= 1", name="score_unit_interval"),
    )

    image_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("image.id", ondelete="CASCADE"))
    reward_version_id: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("model_version.id", ondelete="CASCADE")
    )
    score: Mapped[float] = mapped_column(Float)
    note: Mapped[str | None] = mapped_column(Text)
