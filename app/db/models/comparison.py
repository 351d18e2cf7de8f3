"""Evaluations, the image pairs they ask about, the blind leases and the 9 votes per pair."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigIntPK, CreatedAtMixin, IdMixin, one_of
from app.db.enums import AssignmentState, Side, values

OPEN_POOL_SQL = text("votes_open > 0 AND gold_alignment IS NULL AND gold_fidelity IS NULL")
GOLD_SQL = text("gold_alignment IS NOT NULL OR gold_fidelity IS NOT NULL")
LEASED_SQL = text("state = 'leased'")


class Evaluation(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "evaluation"
    __table_args__ = (
        one_of("candidate_kind", ("model", "best_of_n")),
        CheckConstraint("votes_per_comparison >= 1", name="votes_per_comparison_positive"),
        Index("ix_evaluation_prompt_set_id", "prompt_set_id"),
    )

    name: Mapped[str] = mapped_column(String(200))
    prompt_set_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("prompt_set.id", ondelete="CASCADE"))
    job_id: Mapped[int | None] = mapped_column(BigIntPK, ForeignKey("job.id", ondelete="SET NULL"))
    # image a of each pair comes from the baseline, image b from the candidate
    baseline_version_id: Mapped[int | None] = mapped_column(
        BigIntPK, ForeignKey("model_version.id", ondelete="SET NULL")
    )
    candidate_version_id: Mapped[int | None] = mapped_column(
        BigIntPK, ForeignKey("model_version.id", ondelete="SET NULL")
    )
    candidate_kind: Mapped[str] = mapped_column(String(16), default="model")
    votes_per_comparison: Mapped[int] = mapped_column(Integer, default=9)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # what the shapes world's pixel oracle measured of both sides' images (world models only)
    oracle: Mapped[dict[str, Any] | None] = mapped_column(default=None)


class Comparison(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "comparison"
    __table_args__ = (
        one_of("gold_alignment", values(Side)),
        one_of("gold_fidelity", values(Side)),
        CheckConstraint("image_a_id <> image_b_id", name="distinct_images"),
        CheckConstraint("votes_open >= 0 AND votes_open <= votes_wanted", name="votes_open_bounded"),
        UniqueConstraint("evaluation_id", "image_a_id", "image_b_id"),
        Index("ix_comparison_pool", "votes_open", "id", postgresql_where=OPEN_POOL_SQL, sqlite_where=OPEN_POOL_SQL),
        Index("ix_comparison_evaluation_id", "evaluation_id"),
        # unseen gold pairs by id (leases.pick_gold, statements.gold): flat at any table size
        Index("ix_comparison_gold", "id", postgresql_where=GOLD_SQL, sqlite_where=GOLD_SQL),
    )

    evaluation_id: Mapped[int | None] = mapped_column(BigIntPK, ForeignKey("evaluation.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("prompt.id", ondelete="CASCADE"))
    image_a_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("image.id", ondelete="CASCADE"))
    image_b_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("image.id", ondelete="CASCADE"))
    votes_wanted: Mapped[int] = mapped_column(Integer, default=9)
    votes_open: Mapped[int] = mapped_column(Integer, default=9)
    gold_alignment: Mapped[str | None] = mapped_column(String(4))
    gold_fidelity: Mapped[str | None] = mapped_column(String(4))


class ComparisonImage(IdMixin, Base):
    """The images of one side of a query, in order: the paper shows 4 images of each model against
    each other. image_a_id / image_b_id of the comparison are the first of each side; a comparison
    without rows here (one made before 0007, or one pair by hand) shows those two alone."""

    __tablename__ = "comparison_image"
    __table_args__ = (
        one_of("side", ("a", "b")),
        CheckConstraint("position >= 0", name="position_non_negative"),
        UniqueConstraint("comparison_id", "side", "position"),
        Index("ix_comparison_image_image_id", "image_id"),
    )

    comparison_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("comparison.id", ondelete="CASCADE"))
    side: Mapped[str] = mapped_column(String(1))  # a: baseline, b: candidate (model terms, as votes)
    position: Mapped[int] = mapped_column(Integer)
    image_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("image.id", ondelete="CASCADE"))


class ComparisonAssignment(IdMixin, Base):
    __tablename__ = "comparison_assignment"
    __table_args__ = (
        one_of("state", values(AssignmentState)),
        Index("uq_comparison_assignment_comparison_id_annotator_id", "comparison_id", "annotator_id", unique=True),
        Index("ix_comparison_assignment_annotator_id_state", "annotator_id", "state"),
        Index(
            "ix_comparison_assignment_leased",
            "lease_expires_at",
            postgresql_where=LEASED_SQL,
            sqlite_where=LEASED_SQL,
        ),
    )

    comparison_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("comparison.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("user_account.id", ondelete="CASCADE"))
    # blind pairs: which image this annotator saw on the left, drawn at random per assignment
    left_is_a: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16), default=AssignmentState.leased.value)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    leased_at: Mapped[datetime]
    lease_expires_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]


class ComparisonVote(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "comparison_vote"
    __table_args__ = (
        one_of("alignment", values(Side)),
        one_of("fidelity", values(Side)),
        CheckConstraint("duration_ms IS NULL OR duration_ms >= 0", name="duration_non_negative"),
        # exactly one vote per annotator per pair, and one per assignment
        Index("uq_comparison_vote_comparison_id_annotator_id", "comparison_id", "annotator_id", unique=True),
        Index("uq_comparison_vote_assignment_id", "assignment_id", unique=True),
        Index("ix_comparison_vote_annotator_id_created_at", "annotator_id", "created_at"),
    )

    assignment_id: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("comparison_assignment.id", ondelete="CASCADE")
    )
    comparison_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("comparison.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("user_account.id", ondelete="CASCADE"))
    # stored in model terms (a = baseline, b = candidate); the assignment records what was on the left
    alignment: Mapped[str] = mapped_column(String(4))
    fidelity: Mapped[str] = mapped_column(String(4))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
