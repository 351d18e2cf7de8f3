"""Jobs: database rows with a state machine, progress and a log (Celery only carries the id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigIntPK, CreatedAtMixin, IdMixin, one_of
from app.db.enums import JobKind, JobState, values

ACTIVE_STATES_SQL = text("state IN ('queued', 'running')")


class Job(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "job"
    __table_args__ = (
        one_of("kind", values(JobKind)),
        one_of("state", values(JobState)),
        CheckConstraint("progress >= 0 AND progress <= 100", name="progress_percent"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        # never two live jobs of one kind for one scope (e.g. two reward trainings of one prompt set)
        Index(
            "uq_job_kind_scope_active",
            "kind",
            "scope_key",
            unique=True,
            postgresql_where=ACTIVE_STATES_SQL,
            sqlite_where=ACTIVE_STATES_SQL,
        ),
        Index("ix_job_state_created_at", "state", "created_at"),
        Index("ix_job_prompt_set_id_kind", "prompt_set_id", "kind"),
    )

    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=JobState.queued.value)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prompt_set_id: Mapped[int | None] = mapped_column(
        BigIntPK, ForeignKey("prompt_set.id", ondelete="SET NULL")
    )
    scope_key: Mapped[str] = mapped_column(String(100))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_message: Mapped[str] = mapped_column(String(500), default="")
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    # who or what started it: {"type": "user", "user_id": 3} or {"type": "auto", "new_labels": 512, ...}
    trigger: Mapped[dict[str, Any]] = mapped_column(default=dict)
    parent_job_id: Mapped[int | None] = mapped_column(BigIntPK, ForeignKey("job.id", ondelete="SET NULL"))
    created_by_id: Mapped[int | None] = mapped_column(
        BigIntPK, ForeignKey("user_account.id", ondelete="SET NULL")
    )
    queue: Mapped[str] = mapped_column(String(16), default="gpu")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    worker: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    cancel_requested_at: Mapped[datetime | None]
    # when its message reached the broker (the outbox mark): a queued job without it was accepted
    # while the broker was down, and the reaper sends it again
    sent_at: Mapped[datetime | None]


class JobLog(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "job_log"
    __table_args__ = (
        one_of("level", ("debug", "info", "warning", "error")),
        Index("ix_job_log_job_id_id", "job_id", "id"),
    )

    job_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("job.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(8), default="info")
    message: Mapped[str] = mapped_column(Text)
