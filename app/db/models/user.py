"""Users, their hashed API tokens and their browser sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, true
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigIntPK, CreatedAtMixin, IdMixin, one_of
from app.db.enums import Role, values


class User(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "user_account"
    __table_args__ = (
        one_of("role", values(Role)),
        # usernames are stored lower-case so that "Alice" and "alice" are one account
        CheckConstraint("username = lower(username) AND length(username) >= 1", name="username_normalised"),
        CheckConstraint("failed_login_count >= 0", name="failed_login_count_non_negative"),
    )

    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # exports name annotators by this random pseudonym, never by username
    pseudonym: Mapped[str] = mapped_column(String(32), unique=True)
    failed_login_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]


class LoginLockout(Base):
    """Failed log-ins to one account from one client address (an IPv6 /64 counts as one address).

    Wrong passwords lock the account for *that* address only, so a stranger who guesses cannot lock
    its owner out; `User.failed_login_count` / `locked_until` count all addresses together against a
    much higher ceiling, which bounds guessing spread over many addresses.
    """

    __tablename__ = "login_lockout"
    __table_args__ = (CheckConstraint("failures >= 0", name="failures_non_negative"),)

    user_id: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True
    )
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    last_failure_at: Mapped[datetime | None]


class ApiToken(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "api_token"
    __table_args__ = (Index("ix_api_token_user_id", "user_id"),)

    user_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("user_account.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100), default="")
    # sha256 of the secret: tokens are long random strings, so a fast hash is safe and indexable
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class UserSession(CreatedAtMixin, Base):
    """A browser log-in. The cookie carries a signed random secret; the row holds its hash."""

    __tablename__ = "user_session"
    __table_args__ = (
        Index("ix_user_session_user_id", "user_id"),
        Index("ix_user_session_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("user_account.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime | None]
    user_agent: Mapped[str] = mapped_column(String(255), default="")
