"""Domain errors carry their HTTP status; one set of handlers renders them as JSON or HTML.

Under /api (and /healthz, /readyz) every error is `{"error": {"code", "message"}}`; browsers get
an error page. A stack trace never reaches a user: unexpected exceptions are logged with the
request id and answered with a generic 500. A value the database refuses to store (a number
past its column, a NUL character) is the request's fault, not ours: it gets a 4xx (`refused_value`).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.fields import INT64_MAX, INT64_MIN
from app.headers import SECURITY_HEADERS
from app.logging import request_id_var

log = logging.getLogger("t2if.errors")


class AppError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.headers = headers or {}


class NotAuthenticated(AppError):
    status_code = 401
    code = "not_authenticated"

    def __init__(self, message: str = "Log in or send a valid bearer token.") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class CsrfFailed(AppError):
    status_code = 403
    code = "csrf_failed"

    def __init__(self) -> None:
        super().__init__("The form's security token is missing or stale. Reload the page and try again.")


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class Invalid(AppError):
    status_code = 422
    code = "invalid"


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"


class BodyTooLarge(AppError):
    status_code = 413
    code = "too_large"


class TooManyAttempts(AppError):
    status_code = 429
    code = "too_many_attempts"


STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_attempts",
    503: "unavailable",
}


def wants_json(request: Request) -> bool:
    path = request.url.path
    if path.startswith("/api/") or path in ("/healthz", "/readyz", "/openapi.json"):
        return True
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return True  # a bearer token means a script, never a browser page
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def error_response(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    if wants_json(request):
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)
    return render_error(request, status, code, message, headers=headers)


def render_error(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The error page a browser gets."""
    # local import: the web layer loads templates; workers import the error classes alone
    from app.web import login_page_response, render

    if status == 401:
        # an anonymous browser gets the log-in form in place, with a way back to where it was going
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return login_page_response(request, status_code=401, message="Please log in to continue.", next_path=target)
    if status == 404 and getattr(request.state, "viewer", None) is None:
        # an address no route matched, so no dependency read the session: the app's reader (set by
        # app.main; errors sits below the routers and must not import them) finds who is looking,
        # so the page shows that user's navigation
        reader = getattr(request.app.state, "viewer_from_cookie", None)
        request.state.viewer = reader(request) if reader else None
    return render(
        request, "error.html", {"status": status, "code": code, "message": message}, status_code=status, headers=headers
    )


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        if err.get("type") == "json_invalid":  # loc: ("body", character position) or ("body",)
            reason = (err.get("ctx") or {}).get("error") or err.get("msg") or "invalid"
            pos = err.get("loc", ())[-1:]
            at = f" at character {pos[0]}" if pos and isinstance(pos[0], int) else ""
            parts.append(f"The body is not valid JSON ({reason}{at}).")
            continue
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form", "header")]
        field = ".".join(loc) or "request"
        msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        parts.append(f"{field}: {msg}")
    return "; ".join(parts) or "The request is invalid."


def _beyond_bigint(value: Any) -> bool:
    try:
        number = int(str(value).strip())
    except ValueError:
        return False
    return not INT64_MIN <= number <= INT64_MAX


def refused_value(request: Request, exc: Exception) -> tuple[int, str, str] | None:
    """(status, code, message) when the database or its driver refused a value of the request as
    data, else None (then it is our bug, a 500).

    Request schemas bound what they accept (app/fields.py), so this is the net under every route,
    new ones included: an id or offset past BIGINT in the path (404: nothing has it) or the query
    (422 naming the parameter), a number past its column elsewhere, a NUL character in text
    (Postgres stores neither). Nothing was stored: the request's transaction is rolled back."""
    if isinstance(exc, OverflowError):  # from sqlite3 only; any other overflow is a bug of ours
        if "SQLite" not in str(exc):  # "Python int too large to convert to SQLite INTEGER"
            return None
        kind = "range"
    else:
        orig = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
        text = str(orig)
        if getattr(orig, "sqlstate", None) == "22003":  # numeric_value_out_of_range
            kind = "range"
        elif "0x00" in text or "\\u0000" in text:  # psycopg's own check, or jsonb's 22P05
            kind = "nul"
        else:
            return None
    if kind == "nul":
        return 422, "invalid", "Text in the request contains a NUL character (\\u0000), which cannot be stored."
    for name, value in request.path_params.items():
        if _beyond_bigint(value):
            return 404, "not_found", f"{name}: nothing has the id {value}; ids go up to {INT64_MAX}."
    for name, value in request.query_params.multi_items():
        if _beyond_bigint(value):
            return 422, "invalid", f"{name}: must be at most {INT64_MAX}."
    return 422, "invalid", "A number in the request is too large to be stored."


RETRY_AFTER_SECONDS = 5


def unavailable(exc: BaseException) -> bool:
    """Whether an error means the database (or another service the request needs) is down or
    overloaded for now: the request was not carried out and may be sent again (503 + Retry-After),
    unlike a bug of ours (500). Looks through the chain of causes (SQLAlchemy wraps drivers)."""
    import sqlite3

    import asyncpg
    from sqlalchemy import exc as sa

    transient = (
        sa.OperationalError,  # cannot connect, server closed the connection, deadlock, lock timeout
        sa.TimeoutError,  # the connection pool stayed exhausted
        psycopg.OperationalError,
        sqlite3.OperationalError,  # database locked, file unreachable
        asyncpg.PostgresConnectionError,  # the hot path's pool (class 08)
        asyncpg.exceptions.OperatorInterventionError,  # server shutting down or starting (57P0x)
        asyncpg.exceptions.InsufficientResourcesError,  # too many connections (53xxx)
        ConnectionError,  # refused, reset, aborted
    )
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, transient) or getattr(seen, "connection_invalidated", False):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> Response:
        return error_response(request, exc.status_code, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request, 422, "invalid", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = STATUS_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and detail == "Not Found":
            detail = "There is nothing at this address."
        if exc.status_code == 405:
            detail = "This address does not accept that method."
        if isinstance(exc.__cause__, RecursionError):  # FastAPI's 400 for a body json.loads gave up on
            detail = "The JSON body is nested too deeply to be read."
        return error_response(request, exc.status_code, code, detail, getattr(exc, "headers", None))

    async def _data(request: Request, exc: Exception) -> Response:
        refused = refused_value(request, exc)
        if refused is None:
            raise exc  # our bug after all: on to the 500 below, as any unexpected error
        log.info("%s %s refused: %s", request.method, request.url.path, refused[2])
        return error_response(request, *refused)

    # SQLAlchemy's (which wraps the driver's), psycopg's own (the raw fast path), sqlite3's OverflowError
    for data_error in (DataError, psycopg.DataError, OverflowError):
        app.add_exception_handler(data_error, _data)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Starlette runs this outermost, after our middleware: add its headers here
        rid = getattr(request.state, "request_id", None) or request_id_var.get()
        headers = {k.decode(): v.decode() for k, v in SECURITY_HEADERS} | {"x-request-id": rid}
        if unavailable(exc):
            log.warning("database unavailable on %s [%s]: %s", request.url.path, rid, exc)
            return error_response(
                request,
                503,
                "unavailable",
                "The database is not answering right now, so nothing was done or stored. "
                f"Try again in a few seconds (request id {rid}).",
                headers | {"retry-after": str(RETRY_AFTER_SECONDS), "cache-control": "no-store"},
            )
        log.error("unhandled error on %s [%s]", request.url.path, rid, exc_info=exc)
        return error_response(
            request, 500, "internal_error", f"Something went wrong on our side. Quote request id {rid}.", headers
        )
