"""`t2i-feedback demo` on an empty data directory: it serves the log-in page and a demo annotator
can log in with the printed password (no Postgres, Redis or GPU involved)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time

import httpx

from tests.cli.test_cli import EXE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_serves_login_and_annotator_can_log_in(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("T2IF_")} | {"HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([EXE, "demo", "--port", str(port), "--data-dir", str(tmp_path / "demo")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        base = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
            assert proc.poll() is None, "demo exited early"
        else:
            raise AssertionError("demo did not come up")
        # the banner is printed before the server starts listening
        while not any("annotator1" in ln for ln in lines):
            lines.append(proc.stdout.readline())
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}/" in text
        password = re.search(r"annotator\s+annotator1\s+(\S+)", text).group(1)

        with httpx.Client(base_url=base, follow_redirects=False) as c:
            page = c.get("/login")
            assert page.status_code == 200 and 'name="password"' in page.text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            r = c.post("/login", data={"username": "annotator1", "password": password, "csrf_token": csrf})
            assert r.status_code == 303
            assert c.get("/api/v1/me").json()["role"] == "annotator"
            assert c.get("/readyz").json()["status"] == "ready"
        assert (tmp_path / "demo" / "t2i-feedback.sqlite3").exists()
        assert "request log:" in text  # the README promises a request log; the demo keeps it in a file
        assert "GET /login 200" in (tmp_path / "demo" / "access.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_demo_evaluation_asks_nine_raters_when_the_simulated_raters_run():
    from workers.demo import DemoContext, votes_per_pair

    def ctx(world: bool, raters: int) -> DemoContext:
        return DemoContext(settings=None, logins={}, world=world,  # type: ignore[arg-type]
                           raters=[f"oracle{i}" for i in range(raters)])

    assert votes_per_pair(ctx(True, 9)) == 9  # the README's default: the paper's 9 per pair
    assert votes_per_pair(ctx(True, 2)) == 5 and votes_per_pair(ctx(True, 0)) == 3
    assert votes_per_pair(ctx(False, 0)) == 3  # other models: no oracle, the three demo annotators
