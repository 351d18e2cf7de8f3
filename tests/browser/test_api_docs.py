"""The researcher's browsable API: /docs renders the app's OpenAPI 3.1 offline, under the CSP."""

from __future__ import annotations

import pytest

from tests.browser.conftest import screenshot

pytestmark = pytest.mark.browser


def test_docs_render_every_operation_offline(page, live_server, browser):
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto("/docs")
    page.wait_for_selector(".opblock", timeout=20_000)  # operations drawn from /openapi.json
    screenshot(page, "api-docs")
    text = page.text_content("#swagger-ui") or ""
    assert "Unable to render" not in text and "does not specify a valid version" not in text
    assert "t2i-feedback" in text
    # every operation is listed (tags open by default): one block per (method, path) of the schema
    schema = page.evaluate("fetch('/openapi.json').then(r => r.json())")
    operations = sum(len(ops) for ops in schema["paths"].values())
    assert page.locator(".opblock").count() == operations
    assert all(u.startswith(live_server) for u in requests), [u for u in requests if not u.startswith(live_server)]
