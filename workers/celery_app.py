"""The Celery application: Redis broker, late acks, prefetch 1, a gpu and a cpu queue.

Job state lives in the database row (app/db/models/job.py); Celery only carries job ids, so no
result backend is configured.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from app.config import get_settings


def make_celery(broker_url: str | None = None) -> Celery:
    settings = get_settings()
    celery = Celery("t2i-feedback", broker=broker_url or settings.broker_url, include=["workers.tasks"])
    celery.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,  # a worker killed mid-task leaves the message for another worker
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[Queue("gpu"), Queue("cpu")],
        task_default_queue="cpu",
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        # redis redelivers an unacked message after this long; longer than any single task
        broker_transport_options={"visibility_timeout": 6 * 3600},
        worker_hijack_root_logger=False,
        task_routes={"jobs.check_retrain": {"queue": "cpu"}, "jobs.reap": {"queue": "cpu"}},
        beat_schedule={
            "check-retrain": {"task": "jobs.check_retrain", "schedule": settings.retrain_check_seconds},
            "reap-lost-jobs": {"task": "jobs.reap", "schedule": max(5.0, settings.job_stale_seconds / 4)},
        },
    )
    return celery


celery_app = make_celery()
