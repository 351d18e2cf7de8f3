"""The app↔worker contract for sending work: task names, and enqueue-after-commit.

`enqueue(session, task, job_id)` only records the message on the session; it is sent when the
transaction commits and dropped when it rolls back, so a worker never sees a job row that does
not exist (yet, or ever). A job's `sent_at` is set once its message reached the broker (an
outbox): one accepted while the broker was down is sent again by the reaper
(workers.lifecycle.reap_stale). The app never imports `workers`: Celery is reached by task name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger("t2if.jobs")

PENDING_KEY = "t2if_pending_messages"

# task names (domain.verb) and the queue each goes to
TASK_QUEUES: dict[str, str] = {
    "jobs.generate": "gpu",
    "jobs.train_reward": "gpu",
    "jobs.finetune": "gpu",
    "jobs.evaluate": "gpu",
    "jobs.score": "gpu",
    "jobs.check_retrain": "cpu",
}


@dataclass(frozen=True)
class Message:
    task: str
    kwargs: dict[str, Any]


class Dispatcher(Protocol):
    name: str

    def send(self, message: Message) -> None: ...

    def ping(self) -> None: ...


class CeleryDispatcher:
    """Sends by task name through a Celery client; the app needs no worker code for that."""

    name = "celery"

    def __init__(self, broker_url: str) -> None:
        from celery import Celery

        self.broker_url = broker_url
        self.client = Celery("t2if-client", broker=broker_url)
        self.client.conf.update(task_serializer="json", broker_connection_retry_on_startup=False)

    def send(self, message: Message) -> None:
        queue = TASK_QUEUES.get(message.task, "cpu")
        self.client.send_task(message.task, kwargs=message.kwargs, queue=queue)

    def ping(self) -> None:
        import redis

        redis.Redis.from_url(self.broker_url, socket_connect_timeout=1, socket_timeout=1).ping()


class RecordingDispatcher:
    """Keeps messages in memory; a demo's in-process worker or a test drains them."""

    name = "in-process"

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.listeners: list[Any] = []

    def send(self, message: Message) -> None:
        self.sent.append(message)
        for listener in self.listeners:
            listener(message)

    def ping(self) -> None:
        return None


def enqueue(session: Session, task: str, **kwargs: Any) -> None:
    if task not in TASK_QUEUES:
        raise ValueError(f"unknown task {task!r}")
    session.info.setdefault(PENDING_KEY, []).append(Message(task, kwargs))


def install_after_commit(session_factory: Any, dispatcher: Dispatcher) -> None:
    """Wire a sessionmaker so that queued messages go out only after a successful commit.

    Calling it again for the same factory swaps the dispatcher (listeners are registered once)."""
    first = not hasattr(session_factory, "_t2if_dispatcher")
    session_factory._t2if_dispatcher = dispatcher
    if not first:
        return

    @event.listens_for(session_factory, "after_commit")
    def _send(session: Session) -> None:
        sent = []
        for message in session.info.pop(PENDING_KEY, []):
            try:
                session_factory._t2if_dispatcher.send(message)
            except Exception:  # the row is committed; without its sent_at mark the reaper sends it again
                log.exception("could not send %s; it is re-sent once the broker answers", message.task)
            else:
                if "job_id" in message.kwargs:
                    sent.append(message.kwargs["job_id"])
        if sent:
            mark_sent(session.get_bind(), sent)

    @event.listens_for(session_factory, "after_soft_rollback")
    def _drop(session: Session, previous_transaction: Any) -> None:
        # a savepoint rolling back leaves the outer transaction (and what it queued) alive
        if not session.in_transaction():
            session.info.pop(PENDING_KEY, None)


def mark_sent(bind: Any, job_ids: list[int]) -> None:
    """The outbox mark: these jobs' messages reached the broker (a separate small transaction,
    after the one that created them committed)."""
    from sqlalchemy import update

    from app.db.base import utcnow
    from app.db.models import Job

    try:
        with bind.connect() as conn:
            conn.execute(update(Job).where(Job.id.in_(job_ids)).values(sent_at=utcnow()))
            conn.commit()
    except Exception:  # unmarked jobs are sent again by the reaper: a duplicate message is harmless
        log.exception("could not mark jobs %s as sent", job_ids)
