"""What a request presents as credentials, the CSRF rule and who may annotate: one definition for
the request dependencies (deps) and the annotation hot path (hotpath), which read the same headers
and cookie. Whether a presented credential is live is auth.liveness; who it belongs to, auth.service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from app.auth.cookies import SESSION_COOKIE, session_secret
from app.config import Settings
from app.db.enums import Role
from app.errors import NotAuthenticated

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# GETs that change state: `next` leases work to the caller. A cross-site link must not make a
# logged-in annotator hoard items, so with a session cookie they need the CSRF token as well.
LEASING_GETS = frozenset({"/api/v1/rating-tasks/next", "/api/v1/comparison-tasks/next"})


def changes_state(method: str, path: str) -> bool:
    """Whether a request changes state, so that a session-cookie caller must send its CSRF token."""
    return method not in SAFE_METHODS or (method == "GET" and path.rstrip("/") in LEASING_GETS)


@dataclass(frozen=True)
class Presented:
    via: Literal["token", "session"]
    secret: str  # the raw bearer token, or the session secret the signed cookie carries


def presented(headers: Mapping[str, str], cookies: Mapping[str, str], settings: Settings) -> Presented | None:
    """The credential a request brings. A bearer token wins over a cookie; an Authorization header
    of another scheme is refused; a cookie that is not ours or older than a session lives counts
    as none (the caller is anonymous)."""
    header = headers.get("authorization")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise NotAuthenticated("Send the token as 'Authorization: Bearer <token>'.")
        return Presented("token", credentials.strip())
    secret = session_secret(settings, cookies.get(SESSION_COOKIE))
    return Presented("session", secret) if secret is not None else None


def may(role: str, min_role: Role) -> bool:
    """Whether a role may do what needs `min_role` (annotator < researcher < admin)."""
    return Role(role).rank >= min_role.rank


# the roles that may annotate, for statements that check the caller themselves (hotpath)
ANNOTATING_ROLES = [r.value for r in Role if may(r.value, Role.annotator)]
