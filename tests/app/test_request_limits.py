"""Request-size limits hold before authentication; pages and API answers are not cached."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import bearer, browser_login
from tests.server import ROOT, running_server


def _raw(base: str, head: str, body_chunks: list[bytes]) -> str:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(head.encode())
        try:
            for chunk in body_chunks:
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what we want
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data.decode("latin-1")


@pytest.fixture(scope="module")
def server(pg_url):
    with running_server(pg_url, workers=1) as base:
        yield base


def test_an_anonymous_300_mb_post_is_refused_from_its_declared_length(server, db):
    head = ("POST /api/v1/ratings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 300000000\r\n\r\n")
    answer = _raw(server, head, [b"x" * 65536] * 4)  # the rest never needs to be sent
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "larger than this address accepts" in answer and '"too_large"' in answer


def test_a_chunked_body_is_cut_off_at_the_limit(server, db):
    head = ("POST /api/v1/comparison-votes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 262144
    body = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"] * 12 + [b"0\r\n\r\n"]  # 3 MB > 2 MB
    answer = _raw(server, head, body)
    assert answer.startswith("HTTP/1.1 413"), answer[:200]


def test_small_bodies_still_reach_authentication(server, db):
    head = ("POST /api/v1/ratings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 2\r\nConnection: close\r\n\r\n")
    assert _raw(server, head, [b"{}"]).startswith("HTTP/1.1 401")


def test_upload_routes_have_the_upload_limit_and_others_the_small_one(app):
    from app.middleware import BodyLimitMiddleware

    mw = next(m for m in app.user_middleware if m.cls is BodyLimitMiddleware)
    limits = BodyLimitMiddleware(app, **mw.kwargs)
    assert limits.limit_for("POST", "/api/v1/images") == app.state.settings.max_upload_bytes
    assert limits.limit_for("POST", "/api/v1/prompt-sets/upload") == app.state.settings.max_upload_bytes
    assert limits.limit_for("POST", "/api/v1/ratings") == app.state.settings.max_body_bytes
    assert limits.limit_for("PATCH", "/api/v1/prompt-sets/1") == app.state.settings.max_body_bytes


def test_pages_and_api_answers_are_not_stored_but_static_files_may_be(client, make_user):
    acct = make_user("annotator")
    browser_login(client, acct.username, acct.password)
    assert client.get("/annotate").headers["cache-control"] == "no-store"
    assert client.get("/api/v1/me", headers=bearer(acct)).headers["cache-control"] == "no-store"
    css = client.get("/static/css/" + next(p.name for p in (ROOT / "static" / "css").iterdir()))
    assert css.status_code == 200 and "no-store" not in css.headers.get("cache-control", "")
