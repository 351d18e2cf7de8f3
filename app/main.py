"""create_app(): the FastAPI application, its routers, middleware and error handlers."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import swagger_ui
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker

from app.admin import actions as admin_actions
from app.admin import pages as admin_pages
from app.annotation import api as annotation_api
from app.annotation import hotpath
from app.annotation import pages as annotation_pages
from app.auth import api as auth_api
from app.auth import pages as auth_pages
from app.config import PROJECT_ROOT, Settings, get_settings
from app.db.session import engine_for, make_sessionmaker
from app.deps import require_researcher, viewer_from_cookie
from app.errors import install_error_handlers
from app.evaluations import api as evaluations_api
from app.exports import api as exports_api
from app.exports import pages as exports_pages
from app.health import router as health_router
from app.home import pages as home_pages
from app.images import api as images_api
from app.jobs import api as jobs_api
from app.jobs.dispatch import CeleryDispatcher, Dispatcher, install_after_commit
from app.logging import configure_logging
from app.metrics import Registry
from app.middleware import BodyLimitMiddleware, RequestContextMiddleware
from app.models import api as models_api
from app.prompts import api as prompts_api

SWAGGER_UI_FILES = Path(swagger_ui.__file__).parent / "static"  # Swagger UI 5, shipped by swagger-ui-py

API_DESCRIPTION = """Human-feedback loop for text-to-image models.

Authenticate with `Authorization: Bearer <token>` (create one with `t2i-feedback tokens create`
or on the account page). Errors are `{"error": {"code": ..., "message": ...}}`."""


def create_app(
    settings: Settings | None = None,
    *,
    session_factory: sessionmaker[Session] | None = None,
    dispatcher: Dispatcher | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    if session_factory is None:
        session_factory = make_sessionmaker(engine_for(settings.database_url, settings.database_pool_size))
    factory = session_factory

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the annotation loop's async Postgres path (app/annotation/hotpath.py), one pool per process
        engine = factory.kw["bind"]
        hot = None
        if hotpath.usable(settings, engine.dialect.name):
            hot = hotpath.HotPath(hotpath.asyncpg_dsn(engine.url), settings, factory, app.state.metrics,
                                  app.state.annotation_rng)
            await hot.start()
        app.state.hotpath = hot
        try:
            yield
        finally:
            app.state.hotpath = None
            if hot is not None:
                await hot.close()

    app = FastAPI(
        title="t2i-feedback",
        version="0.1.0",
        description=API_DESCRIPTION,
        docs_url=None,  # served below from vendored assets: no CDN, no inline script
        redoc_url=None,
        openapi_url=None,  # served below, behind a researcher log-in where settings.docs_public is off
        lifespan=lifespan,
    )
    if dispatcher is None:
        dispatcher = CeleryDispatcher(settings.broker_url)
    install_after_commit(session_factory, dispatcher)
    app.state.settings = settings
    app.state.sessionmaker = session_factory
    app.state.dispatcher = dispatcher
    app.state.hotpath = None
    app.state.metrics = Registry()
    # the annotation engines' draws (gold, a pair's sides): one generator for the hot path and the
    # route, so that a test can seed it and get the same stream on every engine
    app.state.annotation_rng = random.Random()

    # added first = inside the request-context middleware: hot answers get the same headers and log line
    app.add_middleware(hotpath.HotPathMiddleware)
    app.add_middleware(
        BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes, max_upload_bytes=settings.max_upload_bytes
    )
    app.add_middleware(RequestContextMiddleware, hsts=settings.env == "production")
    install_error_handlers(app)
    app.state.viewer_from_cookie = viewer_from_cookie

    app.mount("/static/swagger", StaticFiles(directory=SWAGGER_UI_FILES), name="swagger")
    app.mount("/static", StaticFiles(directory=str(PROJECT_ROOT / "static")), name="static")

    # the annotation router first: its two hot routes are matched on every round trip of the
    # annotation loop, and FastAPI tries routes in order (no path of it overlaps another router's)
    routers = (annotation_api.router, health_router, auth_pages.router, home_pages.router, auth_api.router,
               prompts_api.router, images_api.router, evaluations_api.router, jobs_api.router,
               models_api.router, exports_api.router, exports_pages.router, admin_pages.router,
               admin_actions.router,
               annotation_pages.router)
    for router in routers:
        app.include_router(router)

    # the API's description is public in development; in production only researchers and admins read it
    docs_guard = [] if settings.docs_public else [Depends(require_researcher)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=docs_guard)
    def openapi() -> Any:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse, dependencies=docs_guard)
    def docs(request: Request) -> Any:
        from app.web import render

        return render(request, "docs.html")

    return app

