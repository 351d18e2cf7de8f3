"""Server-rendered pages: one Jinja2 environment (autoescaped) and the helpers pages share."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

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


def render_error(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> HTMLResponse:
    if status == 401:
        # an anonymous browser gets the log-in form in place, with a way back to where it was going
        from app.auth.pages import login_page_response

        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return login_page_response(request, status_code=401, message="Please log in to continue.", next_path=target)
    if status == 404 and getattr(request.state, "viewer", None) is None:
        request.state.viewer = _viewer_from_cookie(request)
    return render(
        request, "error.html", {"status": status, "code": code, "message": message}, status_code=status, headers=headers
    )


def _viewer_from_cookie(request: Request) -> Any:
    """Who is looking at a 404 of an address no route matched (so no dependency read the session):
    the page then shows that user's navigation. Read-only; any failure just leaves the page anonymous."""
    from app.deps import SESSION_COOKIE, Viewer, cookie_signer

    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        from app.auth.service import resolve_session

        settings = request.app.state.settings
        raw = cookie_signer(settings, "session").loads(cookie, max_age=settings.session_hours * 3600)
        with request.app.state.sessionmaker() as session:
            principal = resolve_session(session, str(raw))
            return Viewer.of(principal) if principal else None
    except Exception:  # noqa: BLE001 - a bad cookie or an unreachable database: an anonymous 404 page
        return None
