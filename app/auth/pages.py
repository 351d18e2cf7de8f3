"""Browser log-in and log-out (HTML forms with CSRF tokens)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth import service as auth
from app.auth.cookies import LOGIN_CSRF_COOKIE, SESSION_COOKIE, cookie_signer
from app.deps import AnnotatorDep, OptionalPrincipal, SessionDep, SettingsDep, login_csrf_ok
from app.errors import CsrfFailed, TooManyAttempts
from app.web import login_page_response, safe_next

router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, principal: OptionalPrincipal, next: str | None = None) -> Response:
    if principal is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return login_page_response(request, next_path=next)


@router.post("/login", response_class=HTMLResponse)
def login_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    if not login_csrf_ok(request, settings, csrf_token):
        raise CsrfFailed()
    try:
        user = auth.authenticate(session, settings, username, password, request.client.host if request.client else "")
    except TooManyAttempts as exc:
        # the failure counter must be stored even though the request fails
        session.commit()
        return login_page_response(request, status_code=429, message=exc.message, next_path=next, username=username)
    if user is None:
        session.commit()
        return login_page_response(
            request, status_code=401, message="Wrong username or password.", next_path=next, username=username
        )
    raw, _ = auth.start_session(session, settings, user, request.headers.get("user-agent", ""))
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie_signer(settings, "session").dumps(raw),
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        max_age=settings.session_hours * 3600,
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/logout")
def logout(principal: AnnotatorDep, session: SessionDep) -> Response:
    if principal.session_id:
        auth.end_session(session, principal.session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
