"""Jobs benchmark: enqueue-to-start latency through Redis and a real Celery worker, and
generation throughput of the generate job on tiny models (SD-1.5 size with --full-size on a GPU).

    python bench/jobs.py [--jobs 10] [--images 64] [--full-size]

Creates its own database and Redis db, starts `t2i-feedback worker`, prints figures, cleans up.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

SECRET = "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    ap.add_argument("--jobs", type=int, default=10, help="tiny jobs for the enqueue-to-start latency")
    ap.add_argument("--images", type=int, default=64, help="images in the throughput job")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--full-size", action="store_true", help="SD-1.5 architecture, 512 px (use on a GPU)")
    args = ap.parse_args()

    import redis

    from app.auth.schemas import UserCreate
    from app.auth.service import create_user
    from app.config import Settings
    from app.db import migrate
    from app.db.models import Job
    from app.db.session import make_engine, make_sessionmaker, transaction
    from app.jobs import service as jobs
    from app.jobs.dispatch import CeleryDispatcher, install_after_commit
    from app.prompts import service as prompt_sets
    from app.prompts.schemas import PromptSetCreate, TemplateSpec
    from ml.tiny import TinyConfig, write_tiny_clip, write_tiny_sd

    tmp = Path(tempfile.mkdtemp(prefix="t2if-bench-jobs-"))
    sd = write_tiny_sd(tmp / "sd", TinyConfig(full_size=args.full_size))
    clip = write_tiny_clip(tmp / "clip", TinyConfig(full_size=args.full_size))
    name = f"t2if_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(args.pg).set(database=name).render_as_string(hide_password=False)
    redis.Redis.from_url(args.redis).flushdb()
    migrate.upgrade(url)
    settings = Settings(env="test", database_url=url, broker_url=args.redis, storage_url=str(tmp / "storage"),
                        model_cache_dir=str(tmp / "cache"), generator_model=str(sd), clip_model=str(clip),
                        secret_key=SECRET, log_level="WARNING")
    factory = make_sessionmaker(make_engine(url, pool_size=2))
    install_after_commit(factory, CeleryDispatcher(args.redis))
    env = dict(os.environ) | {f"T2IF_{k.upper()}": str(v) for k, v in settings.model_dump().items()
                              if k in ("env", "database_url", "broker_url", "storage_url", "model_cache_dir",
                                       "generator_model", "clip_model", "secret_key", "log_level")}
    worker = subprocess.Popen([str(Path(sys.executable).parent / "t2i-feedback"), "worker", "--loglevel", "WARNING"],
                              env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with transaction(factory) as s:
            user = create_user(s, UserCreate(username="bench", password="bench-password", role="admin"))
            small = prompt_sets.create_prompt_set(s, settings, PromptSetCreate(
                name="latency", prompts=["Two dogs"]), creator=user).id
            big = prompt_sets.create_prompt_set(s, settings, PromptSetCreate(
                name="throughput", template=TemplateSpec(size=max(1, args.images // 4))), creator=user).id
            uid = user.id

        def run(ps: int, per_prompt: int, steps: int, seed: int) -> Job:
            with transaction(factory) as s:
                job = jobs.create_job(s, settings, "generate", {
                    "prompt_set_id": ps, "images_per_prompt": per_prompt, "base_seed": seed,
                    "sampler": {"steps": steps, "batch_size": args.batch}}, user=s.get(type(user), uid))
                job_id = job.id
            while True:
                with factory() as s:
                    row = s.scalar(select(Job).where(Job.id == job_id))
                    if row.state in ("succeeded", "failed", "cancelled"):
                        return row
                time.sleep(0.02)

        run(small, 1, 2, 10_000)  # warm-up: the worker loads its models once
        lat = []
        for i in range(args.jobs):
            row = run(small, 1, 1, i)
            lat.append((row.started_at - row.created_at).total_seconds() * 1000)
        print(f"enqueue-to-start over {args.jobs} jobs: p50 {statistics.median(lat):.0f} ms, "
              f"max {max(lat):.0f} ms (Redis + Celery worker, prefetch 1)")
        row = run(big, 4, args.steps, 0)
        n = row.result.get("images", 0)
        secs = (row.finished_at - row.started_at).total_seconds()
        size = "SD-1.5 size, 512 px" if args.full_size else "tiny SD, 32 px"
        print(f"generate job ({size}, {args.steps} steps, batch {args.batch}): {n} images in {secs:.1f} s = "
              f"{n / secs:.1f} images/s end to end (PNG encoding, storage and rows included)")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
