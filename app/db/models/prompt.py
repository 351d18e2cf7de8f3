"""Prompt sets and their prompts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigIntPK, CreatedAtMixin, IdMixin, one_of
from app.db.enums import PromptCategory, PromptSetPurpose, PromptSplit, values


class PromptSet(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "prompt_set"
    __table_args__ = (
        one_of("purpose", values(PromptSetPurpose)),
        CheckConstraint("labels_per_image >= 1", name="labels_per_image_positive"),
        CheckConstraint("votes_per_comparison >= 1", name="votes_per_comparison_positive"),
        CheckConstraint("gold_rate >= 0 AND gold_rate <= 1", name="gold_rate_fraction"),
        CheckConstraint("lease_seconds >= 10", name="lease_seconds_min"),
        CheckConstraint("retrain_threshold IS NULL OR retrain_threshold >= 1", name="retrain_threshold_positive"),
    )

    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    purpose: Mapped[str] = mapped_column(String(16), default=PromptSetPurpose.training.value)
    labels_per_image: Mapped[int] = mapped_column(Integer, default=1)
    votes_per_comparison: Mapped[int] = mapped_column(Integer, default=9)
    gold_rate: Mapped[float] = mapped_column(Float, default=0.0)
    lease_seconds: Mapped[int] = mapped_column(Integer, default=600)
    # automatic retraining: a train_reward job starts once this many new usable labels arrived
    retrain_threshold: Mapped[int | None] = mapped_column(Integer)
    # what the automatic loop chains after train_reward, e.g. {"finetune": {...}, "evaluate": {...}}
    auto_chain: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # how the prompts were made: {"template": {...}} or {"upload": {"filename": ...}}
    source: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by_id: Mapped[int | None] = mapped_column(
        BigIntPK, ForeignKey("user_account.id", ondelete="SET NULL")
    )


class Prompt(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "prompt"
    __table_args__ = (
        one_of("category", values(PromptCategory)),
        one_of("split", values(PromptSplit)),
        UniqueConstraint("prompt_set_id", "text"),
        Index("ix_prompt_prompt_set_id_category", "prompt_set_id", "category"),
    )

    prompt_set_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("prompt_set.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(16))
    # parsed attributes: {"object": "dog", "count": 2, "color": "green", "background": "city"}
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    split: Mapped[str] = mapped_column(String(8), default=PromptSplit.seen.value)
    position: Mapped[int] = mapped_column(Integer, default=0)
