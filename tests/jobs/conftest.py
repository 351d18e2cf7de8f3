"""Fixtures for the closed loop: tiny models, a real Redis broker and real Celery worker processes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from app.config import Settings
from tests.cli.test_cli import EXE
from tests.conftest import TEST_SECRET, bearer

REDIS_HOST = "redis://127.0.0.1:6379"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> tuple[Path, Path]:
    from ml.tiny import write_tiny_clip, write_tiny_sd

    root = tmp_path_factory.mktemp("loop-models")
    return write_tiny_sd(root / "tiny-sd"), write_tiny_clip(root / "tiny-clip")


@pytest.fixture
def broker_url() -> Iterator[str]:
    """A Redis database of its own, emptied before and after. Runs that go on side by side (two
    checkouts, CI beside a developer) must not meet: each claims a free database with a key in
    database 0 (SET NX, expiring after an hour in case a run dies) instead of drawing one at random
    and flushing another run's queue."""
    import os

    claims = redis.Redis.from_url(f"{REDIS_HOST}/0")
    for db in random.sample(range(1, 15), 14):  # 15: the default test settings
        key = f"t2if-test-broker:{db}"
        if claims.set(key, f"{os.getpid()}", nx=True, ex=3600):
            break
    else:
        raise RuntimeError("every Redis database 1-14 is claimed by another test run")
    url = f"{REDIS_HOST}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        claims.delete(key)


@pytest.fixture
def loop_settings(pg_url, tmp_path, tiny_models, broker_url) -> Settings:
    sd, clip = tiny_models
    return Settings(env="test", database_url=pg_url, broker_url=broker_url, storage_url=str(tmp_path / "storage"),
                    model_cache_dir=str(tmp_path / "cache"), generator_model=str(sd), clip_model=str(clip),
                    secret_key=TEST_SECRET, log_level="WARNING", retrain_check_seconds=1.0, job_stale_seconds=6)


def worker_env(s: Settings) -> dict[str, str]:
    return dict(os.environ) | {
        "T2IF_ENV": "test", "T2IF_DATABASE_URL": s.database_url, "T2IF_BROKER_URL": s.broker_url,
        "T2IF_STORAGE_URL": s.storage_url, "T2IF_MODEL_CACHE_DIR": s.model_cache_dir,
        "T2IF_GENERATOR_MODEL": s.generator_model, "T2IF_CLIP_MODEL": s.clip_model, "T2IF_SECRET_KEY": TEST_SECRET,
        "T2IF_RETRAIN_CHECK_SECONDS": str(s.retrain_check_seconds), "T2IF_JOB_STALE_SECONDS": str(s.job_stale_seconds),
        "T2IF_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1",
    }


class WorkerProcess:
    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [EXE, "worker", "--queues", "gpu,cpu", "--concurrency", "1", "--loglevel", "WARNING", "--beat"],
            env=worker_env(settings), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(log_path.parent),
        )

    def kill9(self) -> None:
        """kill -9 of the whole worker (main process and its pool child)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


@pytest.fixture
def start_worker(loop_settings, tmp_path) -> Iterator[Callable[[], WorkerProcess]]:
    started: list[WorkerProcess] = []

    def _start() -> WorkerProcess:
        w = WorkerProcess(loop_settings, tmp_path / f"worker-{len(started)}.log")
        started.append(w)
        return w

    yield _start
    for w in started:
        w.stop()


@pytest.fixture
def loop_client(loop_settings, session_factory, db):
    """The app with a real Celery dispatcher: jobs made over REST go to Redis after the commit."""
    from fastapi.testclient import TestClient

    from app.jobs.dispatch import CeleryDispatcher
    from app.main import create_app

    app = create_app(loop_settings, session_factory=session_factory,
                     dispatcher=CeleryDispatcher(loop_settings.broker_url))
    with TestClient(app) as c:
        yield c


def wait_for(fn: Callable[[], object], timeout: float = 120, every: float = 0.5, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def job(client: httpx.Client, acct, job_id: int) -> dict:
    return client.get(f"/api/v1/jobs/{job_id}", headers=bearer(acct)).json()


def wait_job(client, acct, job_id: int, states=("succeeded", "failed", "cancelled"), timeout: float = 180) -> dict:
    def done() -> dict | None:
        j = job(client, acct, job_id)
        return j if j["state"] in states else None

    result = wait_for(done, timeout=timeout, what=f"job {job_id} to reach {states}")
    assert isinstance(result, dict)
    return result
