"""Liveness and readiness probes (public, outside /api/v1)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _check_database(request: Request) -> str | None:
    try:
        with request.app.state.sessionmaker() as session:
            session.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return f"database unreachable: {type(exc).__name__}"


def _check_broker(request: Request) -> str | None:
    dispatcher = request.app.state.dispatcher
    try:
        dispatcher.ping()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"broker unreachable: {type(exc).__name__}"


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    problems = [p for p in (await run_in_threadpool(_check_database, request),
                            await run_in_threadpool(_check_broker, request)) if p]
    if problems:
        return JSONResponse(
            {"status": "unavailable", "error": {"code": "not_ready", "message": "; ".join(problems)}},
            status_code=503,
        )
    return JSONResponse({"status": "ready", "database": "ok", "broker": request.app.state.dispatcher.name})
