"""One log line per request, as the README says: on stderr under `serve` (T2IF_LOG_LEVEL=INFO, the default),
in `<data-dir>/access.log` under the demo."""

from __future__ import annotations

import logging
import os

import httpx

from app.logging import ACCESS_LOGGER, access_log_to_file
from tests.server import running_server


def test_serve_logs_each_request_once_with_its_request_id(pg_url, tmp_path):
    env = {"T2IF_LOG_LEVEL": "INFO", "T2IF_STORAGE_URL": str(tmp_path / "storage")}
    with running_server(pg_url, workers=1, extra_env=env, log_level="info") as base:
        r = httpx.get(f"{base}/login", headers={"X-Request-ID": "req-access-13"}, timeout=10)
        assert r.status_code == 200 and r.headers["x-request-id"] == "req-access-13"
        httpx.get(f"{base}/api/v1/me", timeout=10)  # 401: refused requests are logged too
        log = base.log_path.read_text()
    login_lines = [ln for ln in log.splitlines() if "/login" in ln]
    assert len(login_lines) == 1, log  # not twice (uvicorn's own access line says the same without the id)
    line = login_lines[0]
    assert "[req-access-13]" in line and "127.0.0.1 GET /login 200" in line and "t2if.access" in line
    assert any("GET /api/v1/me 401" in ln for ln in log.splitlines()), log


def test_serve_with_warning_level_logs_no_requests(pg_url, tmp_path):
    env = {"T2IF_LOG_LEVEL": "WARNING", "T2IF_STORAGE_URL": str(tmp_path / "storage")}
    with running_server(pg_url, workers=1, extra_env=env, log_level="info") as base:
        httpx.get(f"{base}/login", timeout=10)
        log = base.log_path.read_text()
    assert "/login" not in log


def test_demo_request_log_file(client, tmp_path):
    access = logging.getLogger(ACCESS_LOGGER)
    before = (access.level, access.propagate, list(access.handlers))
    try:
        path = access_log_to_file(tmp_path / "access.log")  # what `t2i-feedback demo` does beside its app
        assert client.get("/login", headers={"X-Request-ID": "demo-req-1"}).status_code == 200
        for h in access.handlers:
            h.flush()
        text = path.read_text()
        assert "[demo-req-1]" in text and "GET /login 200" in text
    finally:
        for h in access.handlers:
            if h not in before[2]:
                access.removeHandler(h)
                h.close()
        access.setLevel(before[0])
        access.propagate = before[1]
    assert os.path.exists(path)
