"""A job's life on a worker: claim, heartbeat, progress, cancel checks, finish; and the reaper
that recovers jobs whose worker died. Job state lives in the database row only."""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from app.db.base import utcnow
from app.db.enums import JobState
from app.db.models import Job
from app.jobs import service as jobs
from app.jobs.dispatch import enqueue
from workers.runtime import Runtime

log = logging.getLogger("t2if.worker")


class JobFailed(Exception):
    """An expected failure with a message meant for the researcher (no traceback needed)."""


class JobContext:
    def __init__(self, rt: Runtime, job_id: int) -> None:
        self.rt = rt
        self.job_id = job_id
        self._last_progress = 0.0
        self._last_cancel_check = 0.0
        self._cancel = False
        self.busy_elsewhere = False
        self.interrupted = False  # stopped because the process stops, not because someone cancelled
        self.lineage = [job_id]  # this job and the jobs it retries (set by claim)

    def claim(self) -> Job | None:
        """queued -> running (or take over a running job whose worker went silent). None: not ours."""
        with self.rt.tx() as s:
            job = s.scalar(select(Job).where(Job.id == self.job_id).with_for_update())
            if job is None:
                log.warning("job %s does not exist (message for a deleted job?)", self.job_id)
                return None
            now = utcnow()
            stale = now - timedelta(seconds=self.rt.settings.job_stale_seconds)
            if job.state == JobState.running.value and job.heartbeat_at is not None and job.heartbeat_at < stale:
                jobs.add_log(s, job.id, f"worker {job.worker} went silent; {self.rt.worker_name} takes over",
                             "warning")
            elif job.state == JobState.running.value and owner_is_dead(job.worker):
                # a pool child of this machine died (OOM, kill -9) and Celery redelivered its message
                # at once: no need to wait for its heartbeat to go stale
                jobs.add_log(s, job.id, f"worker {job.worker} has died; {self.rt.worker_name} takes over",
                             "warning")
            elif job.state == JobState.running.value:
                self.busy_elsewhere = True  # alive on another worker, or so its heartbeat says: look again later
                return None
            elif job.state != JobState.queued.value:
                return None  # finished or cancelled: a duplicate message
            if job.attempts >= job.max_attempts:
                job.state, job.finished_at = JobState.failed.value, now
                job.error = f"gave up after {job.attempts} attempts (the worker was lost each time)"
                return None
            job.state, job.attempts, job.worker = JobState.running.value, job.attempts + 1, self.rt.worker_name
            job.started_at = job.started_at or now
            job.heartbeat_at = now
            job.progress_message = "started"
            jobs.add_log(s, job.id, f"attempt {job.attempts} started on {self.rt.worker_name}")
            self.lineage = retry_lineage(s, job)
            s.flush()
            s.expunge(job)
            return job

    def heartbeat(self) -> None:
        with self.rt.tx() as s:
            s.execute(update(Job).where(Job.id == self.job_id, Job.state == "running").values(heartbeat_at=utcnow()))

    def progress(self, fraction: float, message: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < 1.0:
            return
        self._last_progress = now
        with self.rt.tx() as s:
            s.execute(update(Job).where(Job.id == self.job_id, Job.state == "running").values(
                progress=round(max(0.0, min(100.0, fraction * 100)), 2), progress_message=message[:500],
                heartbeat_at=utcnow()))

    def log(self, message: str, level: str = "info") -> None:
        with self.rt.tx() as s:
            jobs.add_log(s, self.job_id, message, level)

    def should_cancel(self) -> bool:
        """Checked at batch boundaries (and between denoising steps); reads the row at most once a
        second. True too when the process stops: the job then goes back to the queue (requeue)."""
        if self.rt.stopping.is_set():
            self.interrupted = True
            return True
        now = time.monotonic()
        if self._cancel or now - self._last_cancel_check < 1.0:
            return self._cancel
        self._last_cancel_check = now
        with self.rt.tx() as s:
            self._cancel = s.scalar(select(Job.cancel_requested_at).where(Job.id == self.job_id)) is not None
        return self._cancel

    def requeue(self, reason: str) -> None:
        """running -> queued without counting an attempt: the process stopped, the job did not fail.
        What it finished stays (a re-run skips it)."""
        with self.rt.tx() as s:
            job = s.scalar(select(Job).where(Job.id == self.job_id).with_for_update())
            if job is None or job.state != JobState.running.value:
                return
            job.state, job.worker, job.progress_message = JobState.queued.value, None, reason[:500]
            job.attempts = max(0, job.attempts - 1)
            jobs.add_log(s, job.id, reason)

    def finish(self, state: str, *, result: dict[str, Any] | None = None, error: str | None = None) -> None:
        with self.rt.tx() as s:
            job = s.scalar(select(Job).where(Job.id == self.job_id).with_for_update())
            if job is None or job.state != JobState.running.value:
                return
            job.state, job.finished_at, job.heartbeat_at = state, utcnow(), utcnow()
            if result is not None:
                job.result = result
            if state == JobState.succeeded.value:
                job.progress, job.progress_message = 100.0, "done"
            elif state == JobState.cancelled.value:
                job.progress_message = "cancelled"
            job.error = error
            jobs.add_log(s, job.id, f"{state}" + (f": {error}" if error else ""),
                         "error" if state == JobState.failed.value else "info")


def retry_lineage(session: Any, job: Job) -> list[int]:
    """The job and the failed or cancelled jobs it retries, newest first: what they finished is this
    job's work too, so a retry resumes (the images, evaluation rows and pairs they made) instead of
    repeating it."""
    ids, trigger = [job.id], job.trigger
    while isinstance(trigger, dict) and trigger.get("type") == "retry" and trigger.get("of_job") and len(ids) < 100:
        earlier = session.get(Job, int(trigger["of_job"]))
        if earlier is None:
            break
        ids.append(earlier.id)
        trigger = earlier.trigger
    return ids


BUSY_ELSEWHERE = "busy_elsewhere"


def owner_is_dead(worker: str | None) -> bool:
    """Whether a job's worker ("node:pid", as Runtime.worker_name writes it) was a process of this
    machine that no longer exists."""
    node, _, pid = (worker or "").rpartition(":")
    if node != os.uname().nodename or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, run by someone else
        return False
    return False


def run_job(rt: Runtime, job_id: int, handler: Callable[[JobContext, Job], dict[str, Any]]) -> str | None:
    """Claim the job, run its handler with a heartbeat beside it, record the outcome.

    Returns the final state; None if the message was not ours to run; BUSY_ELSEWHERE if another
    worker seems to be running it (the caller looks again once that worker's heartbeat could have
    gone stale, so recovery does not depend on a beat process)."""
    # imported here, not at module level: the Celery parent process forks its pool children and
    # must not have initialised torch (its thread pools do not survive a fork well)
    from ml.generation import Cancelled

    ctx = JobContext(rt, job_id)
    job = ctx.claim()
    if job is None:
        return BUSY_ELSEWHERE if ctx.busy_elsewhere else None
    stop = threading.Event()

    def beat() -> None:
        # several beats fit in the stale window, so a busy machine is not mistaken for a dead one
        every = max(0.5, min(5.0, rt.settings.job_stale_seconds / 4))
        while not stop.wait(every):
            try:
                ctx.heartbeat()
            except Exception:  # a missed beat is harmless; the next one may succeed
                log.exception("heartbeat failed for job %s", job_id)

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        result = handler(ctx, job)
    except Cancelled:
        if ctx.interrupted:
            ctx.requeue("stopped with the process; resumes on the next start")
            return JobState.queued.value
        ctx.finish(JobState.cancelled.value, error=None)
        return JobState.cancelled.value
    except JobFailed as exc:
        ctx.finish(JobState.failed.value, error=str(exc))
        return JobState.failed.value
    except Exception as exc:
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        ctx.finish(JobState.failed.value, error=f"{type(exc).__name__}: {exc}"[:2000])
        return JobState.failed.value
    finally:
        stop.set()
        thread.join(timeout=5)
    ctx.finish(JobState.succeeded.value, result=result)
    return JobState.succeeded.value


UNSENT_GRACE_SECONDS = 10  # the commit -> send -> mark of a new job takes milliseconds; this is plenty


def reap_stale(rt: Runtime) -> dict[str, list[int]]:
    """Running jobs whose worker stopped beating go back to the queue, or fail after max attempts;
    queued jobs whose message never reached the broker are sent again. (Celery's late ack also
    redelivers messages; the claim makes duplicates harmless.)"""
    now = utcnow()
    stale = now - timedelta(seconds=rt.settings.job_stale_seconds)
    out: dict[str, list[int]] = {"requeued": [], "failed": [], "resent": []}
    with rt.tx() as s:
        lost = s.scalars(select(Job).where(Job.state == "running", Job.heartbeat_at < stale)
                         .with_for_update(skip_locked=True))
        for job in lost:
            if job.attempts >= job.max_attempts:
                job.state, job.finished_at = JobState.failed.value, now
                job.error = f"the worker was lost {job.attempts} times (last: {job.worker})"
                jobs.add_log(s, job.id, job.error, "error")
                out["failed"].append(job.id)
            else:
                job.state, job.progress_message = JobState.queued.value, "requeued: worker lost"
                jobs.add_log(s, job.id, f"worker {job.worker} lost (no heartbeat since {job.heartbeat_at:%H:%M:%S}); "
                             "requeued", "warning")
                job.sent_at = None
                enqueue(s, f"jobs.{job.kind}", job_id=job.id)
                out["requeued"].append(job.id)
        # queued jobs whose message never reached the broker (it was down when they were accepted)
        unsent = s.scalars(select(Job).where(Job.state == "queued", Job.sent_at.is_(None),
                                             Job.created_at < now - timedelta(seconds=UNSENT_GRACE_SECONDS))
                           .with_for_update(skip_locked=True))
        for job in unsent:
            jobs.add_log(s, job.id, "sent again: the broker could not be reached when the job was queued", "warning")
            enqueue(s, f"jobs.{job.kind}", job_id=job.id)
            out["resent"].append(job.id)
    return out
