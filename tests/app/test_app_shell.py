"""Health probes, error rendering, security headers, request ids and the API docs."""

from __future__ import annotations

import secrets

import pytest
from fastapi import APIRouter

from app.config import Settings
from app.jobs.dispatch import CeleryDispatcher
from app.main import create_app
from tests.conftest import REDIS_URL, TEST_SECRET


def test_healthz_and_readyz_with_real_postgres_and_redis(settings, session_factory, db):
    from fastapi.testclient import TestClient

    app = create_app(settings, session_factory=session_factory, dispatcher=CeleryDispatcher(REDIS_URL))
    with TestClient(app) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["database"] == "ok"


def test_readyz_reports_unreachable_broker_and_database(pg_url, tmp_path):
    from fastapi.testclient import TestClient

    s = Settings(env="test", database_url="postgresql+psycopg://postgres@127.0.0.1:1/none",
                 broker_url="redis://127.0.0.1:1/0", secret_key=TEST_SECRET, storage_url=str(tmp_path))
    with TestClient(create_app(s, dispatcher=CeleryDispatcher(s.broker_url))) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503
        message = r.json()["error"]["message"]
        assert "database unreachable" in message and "broker unreachable" in message


def test_security_headers_and_request_id(client):
    r = client.get("/login")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert len(r.headers["x-request-id"]) >= 8
    echoed = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    junk = client.get("/healthz", headers={"X-Request-ID": "<script>"})
    assert junk.headers["x-request-id"] != "<script>"


def test_no_inline_script_in_pages(client):
    for path in ("/login", "/docs"):
        html = client.get(path).text
        for tag in html.split("<script")[1:]:
            assert "src=" in tag.split(">")[0], f"inline script on {path}"


def test_errors_are_json_under_api_and_pages_in_the_browser(client):
    r = client.get("/api/v1/does-not-exist")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/does-not-exist", headers={"accept": "text/html"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html") and "Not found" in r.text
    r = client.put("/healthz")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_unexpected_errors_never_leak_a_stack_trace(settings, session_factory, dispatcher, db):
    from fastapi.testclient import TestClient

    app = create_app(settings, session_factory=session_factory, dispatcher=dispatcher)
    boom = APIRouter()

    @boom.get("/api/v1/boom")
    def _boom() -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    app.include_router(boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/api/v1/boom")
    assert r.status_code == 500
    body = r.json()["error"]
    assert body["code"] == "internal_error" and "secret internal detail" not in body["message"]
    assert r.headers["x-request-id"] in body["message"]


def test_openapi_and_docs_are_served_without_a_cdn(client):
    spec = client.get("/openapi.json").json()
    assert "/api/v1/me" in spec["paths"]
    docs = client.get("/docs").text
    assert "/static/swagger/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/static/swagger/swagger-ui-bundle.js").status_code == 200


def test_production_refuses_default_or_short_secret():
    with pytest.raises(ValueError, match="T2IF_SECRET_KEY"):
        Settings(env="production")
    with pytest.raises(ValueError, match="T2IF_SECRET_KEY"):
        Settings(env="production", secret_key="short")
    assert Settings(env="production", secret_key=secrets.token_urlsafe(32)).cookie_secure is True
    with pytest.raises(ValueError, match="too repetitive"):
        Settings(env="production", secret_key="x" * 40)
