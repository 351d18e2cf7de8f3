"""Server-rendered pages: one Jinja2 environment (autoescaped) and the helpers pages share,
the log-in form among them (the log-in route shows it, and so does every 401 in a browser)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.auth import secrets as sec
from app.auth.cookies import LOGIN_CSRF_COOKIE, cookie_signer
from app.config import PROJECT_ROOT

templates = Jinja2Templates(directory=str(PROJECT_ROOT / "templates"))
# Jinja2Templates autoescapes .html; keep it explicit so a template rename cannot turn it off
templates.env.autoescape = True


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    viewer = getattr(request.state, "viewer", None)
    ctx: dict[str, Any] = {"user": viewer, "csrf_token": viewer.csrf_token if viewer else None}
    ctx.update(context or {})
    return templates.TemplateResponse(request, name, ctx, status_code=status_code, headers=headers)


def safe_next(next_path: str | None) -> str:
    """Only local paths: a log-in must never bounce the user to another site."""
    if not next_path:
        return "/"
    parts = urlsplit(next_path)
    if parts.scheme or parts.netloc or not next_path.startswith("/") or next_path.startswith("//"):
        return "/"
    if "\\" in next_path or next_path.startswith(("/login", "/logout")):
        return "/"
    return next_path


def login_page_response(request: Request, *, status_code: int = 200, message: str | None = None,
                        next_path: str | None = None, username: str = "") -> HTMLResponse:
    settings = request.app.state.settings
    token = sec.new_secret()
    response = render(
        request,
        "login.html",
        {"login_csrf": token, "message": message, "next": safe_next(next_path), "username": username},
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        cookie_signer(settings, "login-csrf").dumps(token),
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
        max_age=24 * 3600,
        path="/",
    )
    response.headers["cache-control"] = "no-store"
    return response
