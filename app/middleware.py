"""Pure ASGI middleware: request ids, security and cache headers, request-size limits (no body buffering)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import BodyTooLarge, error_response
from app.headers import NO_STORE, SECURITY_HEADERS
from app.logging import ACCESS_LOGGER, request_id_var

log = logging.getLogger(ACCESS_LOGGER)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

CACHEABLE_PREFIXES = ("/static/",)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.extra = [(b"strict-transport-security", b"max-age=31536000; includeSubDomains")] if hsts else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex[:16]
        token = request_id_var.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status: dict[str, Any] = {}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.append((b"x-request-id", rid.encode()))
                for key, value in SECURITY_HEADERS + self.extra:
                    if key not in present:
                        headers.append((key, value))
                if b"cache-control" not in present and not scope.get("path", "").startswith(CACHEABLE_PREFIXES):
                    headers.append(NO_STORE)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                log.info(
                    "%s %s %s %s %.1fms",
                    client[0] if client else "-",
                    scope.get("method"),
                    scope.get("path"),
                    status.get("code", "-"),
                    (time.perf_counter() - started) * 1000,
                )
            request_id_var.reset(token)


# routes that take files or long prompt lists (a prompt set may hold 100,000 prompts)
UPLOAD_ROUTES = (("POST", "/api/v1/images"), ("POST", "/api/v1/prompt-sets/upload"), ("POST", "/api/v1/prompt-sets"))


class BodyLimitMiddleware:
    """Refuse request bodies over a size limit before anything reads them, authentication included.

    Upload routes (`UPLOAD_ROUTES`) may send `max_upload_bytes`, every other route `max_body_bytes`.
    A declared Content-Length over the limit is answered 413 at once; a body that streams past it
    (chunked, or a false length) is cut off at the limit, so no request costs more memory than that.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app, self.default, self.upload = app, max_body_bytes, max_upload_bytes

    def limit_for(self, method: str, path: str) -> int:
        upload = any(method == m and path.rstrip("/") == p for m, p in UPLOAD_ROUTES)
        return self.upload if upload else self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self.refuse(scope, receive, send, limit)
            return
        received = 0
        state = {"over": False, "answered": False}

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    state["over"] = True
                    raise BodyTooLarge(self.message(limit))
            return message

        async def guarded_send(message: Message) -> None:
            # Whatever the app made of the cut-off body (a parse error, most likely), the answer is 413.
            if state["over"]:
                if not state["answered"] and message["type"] == "http.response.start":
                    state["answered"] = True
                    await self.refuse(scope, receive, send, limit)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not state["answered"]:
                state["answered"] = True
                await self.refuse(scope, receive, send, limit)

    @staticmethod
    def message(limit: int) -> str:
        return f"The request body is larger than this address accepts ({limit:,} bytes)."

    async def refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error_response(Request(scope), 413, "too_large", self.message(limit), {"connection": "close"})
        await response(scope, receive, send)
