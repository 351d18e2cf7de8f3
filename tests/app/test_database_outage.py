"""A database that does not answer: 503 with Retry-After on every path, never a 500."""

from __future__ import annotations

import pytest

from app.db.session import make_engine, make_sessionmaker

DOWN = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2"  # nothing listens on port 1


@pytest.fixture
def down_client(settings, dispatcher):
    from fastapi.testclient import TestClient

    from app.main import create_app

    s = settings.model_copy(update={"database_url": DOWN})
    app = create_app(s, session_factory=make_sessionmaker(make_engine(DOWN, pool_size=2)), dispatcher=dispatcher)
    with TestClient(app, raise_server_exceptions=False) as c:  # lifespan: the hot path's pool starts empty
        yield c


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/v1/rating-tasks/next"),  # the asyncpg hot path
        ("POST", "/api/v1/ratings"),
        ("GET", "/api/v1/prompt-sets"),  # the portable SQLAlchemy path
        ("GET", "/api/v1/me"),
    ],
)
def test_api_answers_503_with_retry_after_while_the_database_is_down(down_client, method, path):
    r = down_client.request(method, path, headers={"Authorization": "Bearer t2if_" + "x" * 40},
                            json={"assignment_id": 1, "label": "good"} if method == "POST" else None)
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers["retry-after"] == "5"
    body = r.json()["error"]
    assert body["code"] == "unavailable" and "Try again" in body["message"]


def test_a_browser_gets_an_error_page_not_a_stack_trace(down_client, settings):
    from app.deps import SESSION_COOKIE, cookie_signer

    down_client.cookies.set(SESSION_COOKIE, cookie_signer(settings, "session").dumps("a-session-secret"))
    r = down_client.get("/annotate", headers={"Accept": "text/html"})
    assert r.status_code == 503 and "text/html" in r.headers["content-type"]
    assert "not answering" in r.text and "Traceback" not in r.text


def test_readiness_reports_the_outage(down_client):
    assert down_client.get("/readyz").status_code == 503
