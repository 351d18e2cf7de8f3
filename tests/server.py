"""A real server process for tests that need real HTTP and real concurrency."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import TEST_SECRET

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server(str):
    """The server's base URL, with a handle on its process group (for fault tests)."""

    proc: subprocess.Popen
    log_path: Path  # its stdout and stderr (uvicorn writes its own lines to stdout)

    def kill9(self) -> None:
        """kill -9 of the whole API: the main process and its uvicorn workers."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@contextmanager
def running_server(database_url: str, *, workers: int = 2, extra_env: dict[str, str] | None = None,
                   storage_url: str = "/tmp/t2if-test-storage", port: int | None = None,
                   log_level: str = "warning") -> Iterator[Server]:
    port = port or free_port()
    env = dict(os.environ) | {
        "T2IF_DATABASE_URL": database_url, "T2IF_SECRET_KEY": TEST_SECRET, "T2IF_ENV": "test",
        "T2IF_STORAGE_URL": storage_url, "T2IF_LOG_LEVEL": "WARNING", "T2IF_DATABASE_POOL_SIZE": "40",
        **(extra_env or {}),
    }
    # the console script imports whichever copy of the package is installed; run this checkout's
    # code instead (cwd = repo root comes first on sys.path), like bench/annotate.py does
    cmd = [sys.executable, "-c", "from workers.cli import main; main()"]
    args = ["serve", "--port", str(port), "--workers", str(workers), "--log-level", log_level]
    # output to a file, not a pipe: a pipe nobody reads fills up and blocks the server's logging
    log = tempfile.NamedTemporaryFile("w+", prefix=f"t2if-server-{port}-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen([*cmd, *args], env=env, stdout=log, stderr=log, text=True,
                            cwd=ROOT, start_new_session=True)  # its own process group: kill9 hits it all
    base = Server(f"http://127.0.0.1:{port}")
    base.proc, base.log_path = proc, Path(log.name)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {base.log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
