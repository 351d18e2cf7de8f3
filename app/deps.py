"""Request-scoped dependencies: settings, the one transaction per request, the caller and its role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from app.auth import service as auth
from app.auth.secrets import same
from app.auth.service import Principal
from app.config import Settings
from app.db.enums import Role
from app.errors import CsrfFailed, Forbidden, NotAuthenticated

SESSION_COOKIE = "t2if_session"
LOGIN_CSRF_COOKIE = "t2if_login_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_db(request: Request) -> Iterator[Session]:
    """The request's unit of work: services flush, this boundary commits before the response."""
    with request.app.state.sessionmaker() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# scope="function": commit happens before the response is sent, so a 2xx means "stored"
SessionDep = Annotated[Session, Depends(get_db, scope="function")]


def cookie_signer(settings: Settings, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=salt)


async def _csrf_candidate(request: Request) -> str | None:
    """The CSRF token a state-changing browser request brought: header (fetch) or form field."""
    if request.method in SAFE_METHODS:
        return None
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get("csrf_token")
        return value if isinstance(value, str) else None
    return None


def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    csrf: Annotated[str | None, Depends(_csrf_candidate)],
) -> Principal | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise NotAuthenticated("Send the token as 'Authorization: Bearer <token>'.")
        principal = auth.resolve_token(session, credentials.strip())
        if principal is None:
            raise NotAuthenticated("The bearer token is invalid, expired or revoked.")
        request.state.viewer = Viewer.of(principal)
        return principal
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        raw = cookie_signer(settings, "session").loads(cookie, max_age=settings.session_hours * 3600)
    except BadSignature:
        return None
    principal = auth.resolve_session(session, str(raw))
    if principal is None:
        return None
    # cookies ride along on cross-site requests; a state change must prove it came from our page
    if request.method not in SAFE_METHODS and not same(csrf, principal.csrf_token):
        raise CsrfFailed()
    request.state.viewer = Viewer.of(principal)
    return principal


@dataclass(frozen=True)
class Viewer:
    """A detached copy of the caller for templates: still readable after a rollback."""

    id: int
    username: str
    display_name: str
    role: str
    pseudonym: str
    csrf_token: str | None

    @classmethod
    def of(cls, p: Principal) -> Viewer:
        u = p.user
        return cls(u.id, u.username, u.display_name, u.role, u.pseudonym, p.csrf_token)


OptionalPrincipal = Annotated[Principal | None, Depends(get_principal)]


class RoleGuard:
    """Dependency that admits callers whose role is at least `min_role` (annotator < researcher < admin).

    The route-permission test finds these guards on every route; a route without one must be
    listed as public there.
    """

    def __init__(self, min_role: Role) -> None:
        self.min_role = min_role

    async def __call__(self, principal: OptionalPrincipal) -> Principal:
        if principal is None:
            raise NotAuthenticated()
        if principal.role.rank < self.min_role.rank:
            raise Forbidden(f"This needs the {self.min_role.value} role; you are {principal.role.value}.")
        return principal


require_annotator = RoleGuard(Role.annotator)
require_researcher = RoleGuard(Role.researcher)
require_admin = RoleGuard(Role.admin)

AnnotatorDep = Annotated[Principal, Depends(require_annotator)]
ResearcherDep = Annotated[Principal, Depends(require_researcher)]
AdminDep = Annotated[Principal, Depends(require_admin)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "-"


def login_csrf_ok(request: Request, settings: Settings, submitted: str | None) -> bool:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not cookie or not submitted:
        return False
    try:
        expected = cookie_signer(settings, "login-csrf").loads(cookie, max_age=24 * 3600)
    except BadSignature:
        return False
    return same(str(expected), submitted)


__all__ = [
    "AdminDep",
    "AnnotatorDep",
    "OptionalPrincipal",
    "ResearcherDep",
    "RoleGuard",
    "SessionDep",
    "SettingsDep",
    "Principal",
]
