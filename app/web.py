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
    return render(
        request, "error.html", {"status": status, "code": code, "message": message}, status_code=status, headers=headers
    )
