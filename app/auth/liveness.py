"""When a credential lets its holder in. One definition, used by the ORM (auth.service) and, as
SQL text compiled from it, by the annotation hot path's statements (hotpath)."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import and_, literal_column, or_
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from app.db.models import ApiToken, User, UserSession


def token_live(token: Any, user: Any, now: Any) -> ColumnElement[bool]:
    """A bearer token lets in while it is not revoked, not expired and its user is active."""
    return and_(token.revoked_at.is_(None), or_(token.expires_at.is_(None), token.expires_at > now),
                user.is_active)


def session_live(session: Any, user: Any, now: Any) -> ColumnElement[bool]:
    """A browser session lets in until it expires, while its user is active (ending a session
    deletes its row)."""
    return and_(session.expires_at > now, user.is_active)


# The conditions as Postgres SQL over the aliases t (api_token), s (user_session), u (user_account);
# the time is left as a marker that live_sql() turns into the statement's parameter.
_NOW = "__now__"
_T, _S, _U = aliased(ApiToken, name="t"), aliased(UserSession, name="s"), aliased(User, name="u")
_SQL = {
    "token": str(token_live(_T, _U, literal_column(_NOW)).compile(dialect=postgresql.dialect())),
    "session": str(session_live(_S, _U, literal_column(_NOW)).compile(dialect=postgresql.dialect())),
}


def live_sql(credential: Literal["token", "session"], now: str) -> str:
    """token_live / session_live as SQL text, with `now` the statement's parameter for the time
    (psycopg: "%(now)s", asyncpg: "$2")."""
    return _SQL[credential].replace(_NOW, now)

