"""A real HTTP server (uvicorn in a thread) and Debian's chromium driven by Playwright.

One browser for the whole run (it takes a second or two to start); one server and one fresh
browser context (cookies, localStorage) per test, so tests never see each other's sessions or data.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"


@pytest.fixture
def page(browser, live_server) -> Iterator[Any]:
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 860})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_console(msg: Any) -> None:
        if msg.type == "error" and "Content Security Policy" in msg.text:
            errors.append(msg.text)

    pg.on("console", on_console)
    yield pg
    context.close()
    # an uncaught exception or a CSP violation is a bug even when the test's checks passed
    assert not errors, f"errors in the page: {errors}"


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def png(color: tuple[int, int, int], count: int = 1, size: tuple[int, int] = (360, 270)) -> bytes:
    """A small picture: `count` discs of `color` on a pale background (distinct bytes per call)."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", size, (236, 240, 232))
    draw = ImageDraw.Draw(im)
    step = size[0] // (count + 1)
    for i in range(count):
        cx, cy, r = step * (i + 1), size[1] // 2, min(step // 2 - 4, 60)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=color)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Api:
    """The REST API as a researcher script would use it: bearer token, JSON in and out."""

    base_url: str
    token: str

    def _client(self) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.base_url, headers=auth, timeout=10)

    def post(self, path: str, expect: int = 201, **kwargs: Any) -> Any:
        with self._client() as c:
            r = c.post(path, **kwargs)
        assert r.status_code == expect, r.text
        return r.json()

    def prompt_set(self, name: str, prompts: list[str], purpose: str = "training") -> int:
        body = {"name": name, "prompts": prompts, "purpose": purpose}
        return self.post("/api/v1/prompt-sets", json=body)["id"]

    def image(self, prompt_set_id: int, prompt: str, data: bytes) -> int:
        return self.post("/api/v1/images", data={"prompt_set_id": str(prompt_set_id), "prompt": prompt},
                         files={"file": ("image.png", data, "image/png")})["id"]

    def comparison(self, image_a_id: int, image_b_id: int) -> dict[str, Any]:
        return self.post("/api/v1/comparisons", json={"image_a_id": image_a_id, "image_b_id": image_b_id})


@pytest.fixture
def researcher_api(live_server, make_user) -> Api:
    return Api(live_server, make_user("researcher").token)


def log_in(page: Any, path: str, account: Any) -> None:
    """Open a page as an anonymous visitor, get the log-in form in its place, log in with the keyboard."""
    page.goto(path)
    page.fill("#username", account.username)
    page.fill("#password", account.password)
    with page.expect_navigation():
        page.press("#password", "Enter")
    assert page.url.endswith(path), page.url


def wait_until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
