"""A real server process for tests that need real HTTP and real concurrency."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.cli.test_cli import EXE
from tests.conftest import TEST_SECRET


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(database_url: str, *, workers: int = 2, extra_env: dict[str, str] | None = None,
                   storage_url: str = "/tmp/t2if-test-storage") -> Iterator[str]:
    port = free_port()
    env = dict(os.environ) | {
        "T2IF_DATABASE_URL": database_url, "T2IF_SECRET_KEY": TEST_SECRET, "T2IF_ENV": "test",
        "T2IF_STORAGE_URL": storage_url, "T2IF_LOG_LEVEL": "WARNING", "T2IF_DATABASE_POOL_SIZE": "40",
        **(extra_env or {}),
    }
    proc = subprocess.Popen([EXE, "serve", "--port", str(port), "--workers", str(workers), "--log-level", "warning"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
