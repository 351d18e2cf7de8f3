"""Celery tasks: short adapters from a job id to a handler (job row in, ml/ call, results out)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.signals import worker_process_init, worker_ready

from app.db.models import Job
from app.jobs import loop
from workers.celery_app import celery_app
from workers.handlers import evaluate, finetune, generate, train_reward
from workers.lifecycle import BUSY_ELSEWHERE, JobContext, reap_stale, run_job
from workers.runtime import Runtime, get_runtime

log = logging.getLogger("t2if.tasks")

HANDLERS: dict[str, Callable[[JobContext, Job], dict[str, Any]]] = {
    "generate": generate.run,
    "train_reward": train_reward.run,
    "finetune": finetune.run,
    "evaluate": evaluate.run,
}
# seconds; the soft limit raises inside the task (the job fails with a reason), the hard one kills it
TIME_LIMITS = {"generate": 6 * 3600, "train_reward": 2 * 3600, "finetune": 24 * 3600, "evaluate": 12 * 3600}


def execute(rt: Runtime, kind: str, job_id: int) -> str | None:
    return run_job(rt, job_id, HANDLERS[kind])


def check_retrain(rt: Runtime) -> list[int]:
    with rt.tx() as s:
        return loop.check_retrain(s, rt.settings)


def _job_task(kind: str) -> Any:
    @celery_app.task(name=f"jobs.{kind}", bind=True, soft_time_limit=TIME_LIMITS[kind],
                     time_limit=TIME_LIMITS[kind] + 120, max_retries=None)
    def task(self: Any, job_id: int) -> str | None:
        rt = get_runtime()
        outcome = execute(rt, kind, job_id)
        if outcome == BUSY_ELSEWHERE:
            # another worker holds the job: if it died, its heartbeat goes stale within
            # job_stale_seconds and this message takes the job over then
            raise self.retry(countdown=rt.settings.job_stale_seconds + 1)
        return outcome

    return task


generate_task = _job_task("generate")
train_reward_task = _job_task("train_reward")
finetune_task = _job_task("finetune")
evaluate_task = _job_task("evaluate")


@celery_app.task(name="jobs.check_retrain", ignore_result=True)
def check_retrain_task() -> list[int]:
    return check_retrain(get_runtime())


@celery_app.task(name="jobs.reap", ignore_result=True)
def reap_task() -> dict[str, list[int]]:
    return reap_stale(get_runtime())


@worker_process_init.connect
def _runtime_of_its_own(**_: Any) -> None:
    # A pool child is forked from the main process, which may have built a runtime already (the
    # reaping at start): the child makes its own, with its own database connections (a connection
    # shared across a fork is corrupted by whichever process uses it second) and its own pid in
    # the name that job logs and owner checks use.
    if get_runtime.cache_info().currsize:
        get_runtime().sessions.kw["bind"].dispose(close=False)
        get_runtime.cache_clear()


@worker_ready.connect
def _reap_on_start(**_: Any) -> None:
    # a worker coming back after a crash recovers what the dead one left running
    try:
        reaped = reap_stale(get_runtime())
        if any(reaped.values()):
            log.warning("recovered jobs at start: %s", reaped)
    except Exception:
        log.exception("reaping at start failed")
