"""Images (generated or uploaded) and their good/bad ratings with the leases that hand them out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, SmallInteger, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigIntPK, CreatedAtMixin, IdMixin, one_of
from app.db.enums import AssignmentState, GoldLabel, ImageSource, RatingLabel, values

OPEN_POOL_SQL = text("ratings_open > 0 AND gold_label IS NULL")
GOLD_SQL = text("gold_label IS NOT NULL")
LEASED_SQL = text("state = 'leased'")


class Image(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "image"
    __table_args__ = (
        one_of("source", values(ImageSource)),
        one_of("gold_label", values(GoldLabel)),
        CheckConstraint("ratings_wanted >= 0", name="ratings_wanted_non_negative"),
        # the overlap rule: open slots never go below zero nor above what is wanted
        CheckConstraint("ratings_open >= 0 AND ratings_open <= ratings_wanted", name="ratings_open_bounded"),
        CheckConstraint("certainty >= 0 AND certainty <= 1000", name="certainty_permille"),
        # a job writes each (generator, prompt, seed) once, so a re-run cannot duplicate images;
        # the generator is part of the key because an evaluation draws both arms with shared seeds
        Index(
            "uq_image_job_id_generator_version_id_prompt_id_seed",
            "job_id",
            "generator_version_id",
            "prompt_id",
            "seed",
            unique=True,
            postgresql_where=text("job_id IS NOT NULL"),
            sqlite_where=text("job_id IS NOT NULL"),
        ),
        # "next image": fullest open items first, then the least certain, independent of table size
        Index(
            "ix_image_pool",
            "prompt_set_id",
            "ratings_open",
            "certainty",
            "id",
            postgresql_where=OPEN_POOL_SQL,
            sqlite_where=OPEN_POOL_SQL,
        ),
        Index("ix_image_gold", "prompt_set_id", "id", postgresql_where=GOLD_SQL, sqlite_where=GOLD_SQL),
        Index("ix_image_prompt_id", "prompt_id"),
        Index("ix_image_content_hash", "content_hash"),
    )

    prompt_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("prompt.id", ondelete="CASCADE"))
    # denormalised from prompt so that the hand-out query touches one table
    prompt_set_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("prompt_set.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16), default=ImageSource.generated.value)
    generator_version_id: Mapped[int | None] = mapped_column(
        BigIntPK, ForeignKey("model_version.id", ondelete="SET NULL")
    )
    job_id: Mapped[int | None] = mapped_column(BigIntPK, ForeignKey("job.id", ondelete="SET NULL"))
    uploaded_by_id: Mapped[int | None] = mapped_column(
        BigIntPK, ForeignKey("user_account.id", ondelete="SET NULL")
    )
    seed: Mapped[int | None] = mapped_column(BigInteger)
    # steps, guidance, scheduler, width, height
    sampler: Mapped[dict[str, Any]] = mapped_column(default=dict)
    storage_key: Mapped[str] = mapped_column(String(500))
    content_hash: Mapped[str] = mapped_column(String(64))
    mime_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    byte_size: Mapped[int] = mapped_column(Integer)
    # gold items carry a known answer; it is used for scoring and never sent to the browser
    gold_label: Mapped[str | None] = mapped_column(String(8))
    ratings_wanted: Mapped[int] = mapped_column(Integer, default=1)
    # wanted minus submitted usable labels minus live leases
    ratings_open: Mapped[int] = mapped_column(Integer, default=1)
    # how sure the reward model that last ranked the set's labelling order is of this image, in
    # permille (2·|score − ½|·1000); among equally full open images the least certain are handed out
    # first. 0 (the default) for an image no model has ranked: unknown counts as least certain, and
    # a set nobody ranked keeps its arrival order (train_reward's "label_order").
    certainty: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))


class RatingAssignment(IdMixin, Base):
    """One image leased to one annotator; the unique pair keeps raters distinct per image."""

    __tablename__ = "rating_assignment"
    __table_args__ = (
        one_of("state", values(AssignmentState)),
        Index("uq_rating_assignment_image_id_annotator_id", "image_id", "annotator_id", unique=True),
        Index("ix_rating_assignment_annotator_id_state", "annotator_id", "state"),
        Index(
            "ix_rating_assignment_leased",
            "lease_expires_at",
            postgresql_where=LEASED_SQL,
            sqlite_where=LEASED_SQL,
        ),
    )

    image_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("image.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("user_account.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default=AssignmentState.leased.value)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    leased_at: Mapped[datetime]
    lease_expires_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]


class Rating(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "rating"
    __table_args__ = (
        one_of("label", values(RatingLabel)),
        CheckConstraint("duration_ms IS NULL OR duration_ms >= 0", name="duration_non_negative"),
        # one label per annotator per image, and one per assignment: the database refuses doubles
        Index("uq_rating_image_id_annotator_id", "image_id", "annotator_id", unique=True),
        Index("uq_rating_assignment_id", "assignment_id", unique=True),
        Index("ix_rating_annotator_id_created_at", "annotator_id", "created_at"),
        Index("ix_rating_prompt_set_id_id", "prompt_set_id", "id"),
        # the dashboards' labels-per-hour and pace figures scan recent ratings by time
        Index("ix_rating_created_at", "created_at"),
    )

    assignment_id: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("rating_assignment.id", ondelete="CASCADE")
    )
    image_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("image.id", ondelete="CASCADE"))
    prompt_set_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("prompt_set.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("user_account.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(8))
    skip_reason: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
