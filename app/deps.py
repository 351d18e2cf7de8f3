"""Request-scoped dependencies: settings, the one transaction per request, the caller and its role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from itsdangerous import BadSignature
from sqlalchemy.orm import Session

from app.auth import service as auth
from app.auth.cookies import LOGIN_CSRF_COOKIE, SESSION_COOKIE, cookie_signer, session_secret
from app.auth.credentials import changes_state, may, presented
from app.auth.secrets import same
from app.auth.service import Principal
from app.config import Settings
from app.db.enums import Role
from app.errors import CsrfFailed, Forbidden, NotAuthenticated


async def get_settings(request: Request) -> Settings:  # async: no threadpool hop for a dict lookup
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


def is_json(content_type: str | None) -> bool:
    """Whether a body's Content-Type says JSON (none at all counts: JSON is what the API speaks)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


async def _csrf_candidate(request: Request) -> str | None:
    """The CSRF token a state-changing browser request brought: header (fetch) or form field."""
    if not changes_state(request.method, request.url.path) or request.headers.get("authorization"):
        return None  # a bearer token needs no CSRF token (and its body must stay unread here)
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get("csrf_token")
        return value if isinstance(value, str) else None
    return None


def resolve_principal(request: Request, session: Session, settings: Settings, csrf: str | None) -> Principal | None:
    """Who is calling: the one definition every route uses (through get_principal, or Caller on
    the two annotation routes). A bad bearer token is refused; no credentials, or a session that
    is not live, is anonymous; a session's state change must bring its CSRF token."""
    found = presented(request.headers, request.cookies, settings)
    if found is None:
        return None
    if found.via == "token":
        principal = auth.resolve_token(session, found.secret)
        if principal is None:
            raise NotAuthenticated("The bearer token is invalid, expired or revoked.")
    else:
        principal = auth.resolve_session(session, found.secret)
        if principal is None:
            return None
        # cookies ride along on cross-site requests; a state change must prove it came from our page
        if changes_state(request.method, request.url.path) and not same(csrf, principal.csrf_token):
            raise CsrfFailed()
    request.state.viewer = Viewer.of(principal)
    return principal


def admit(principal: Principal | None, min_role: Role) -> Principal:
    """The caller, if their role is at least `min_role`; else 401 (nobody) or 403."""
    if principal is None:
        raise NotAuthenticated()
    if not may(principal.role.value, min_role):
        raise Forbidden(f"This needs the {min_role.value} role; you are {principal.role.value}.")
    return principal


def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    csrf: Annotated[str | None, Depends(_csrf_candidate)],
) -> Principal | None:
    return resolve_principal(request, session, settings, csrf)


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


def viewer_from_cookie(request: Request) -> Viewer | None:
    """Who is looking at a page no route matched (a 404), from the session cookie alone. Read-only;
    a bad cookie or an unreachable database leaves the page anonymous."""
    raw = session_secret(request.app.state.settings, request.cookies.get(SESSION_COOKIE))
    if raw is None:
        return None
    try:
        with request.app.state.sessionmaker() as session:
            principal = auth.resolve_session(session, raw)
            return Viewer.of(principal) if principal else None
    except Exception:  # noqa: BLE001 - an error page must not fail for want of a user name
        return None


OptionalPrincipal = Annotated[Principal | None, Depends(get_principal)]


class RoleGuard:
    """Dependency that admits callers whose role is at least `min_role` (annotator < researcher < admin).

    The route-permission test finds these guards on every route; a route without one must be
    listed as public there.
    """

    def __init__(self, min_role: Role) -> None:
        self.min_role = min_role

    async def __call__(self, principal: OptionalPrincipal) -> Principal:
        return admit(principal, self.min_role)


require_annotator = RoleGuard(Role.annotator)
require_researcher = RoleGuard(Role.researcher)
require_admin = RoleGuard(Role.admin)

AnnotatorDep = Annotated[Principal, Depends(require_annotator)]
ResearcherDep = Annotated[Principal, Depends(require_researcher)]
AdminDep = Annotated[Principal, Depends(require_admin)]


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
