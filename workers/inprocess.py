"""The demo's in-process worker: the same task code as Celery, run on a thread (no Redis)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for

from sqlalchemy import select

from app.db.models import Job
from app.jobs.dispatch import Message, RecordingDispatcher
from workers.lifecycle import reap_stale
from workers.runtime import Runtime
from workers.tasks import HANDLERS, check_retrain, execute

log = logging.getLogger("t2if.inprocess")


class InProcessWorker:
    """Runs jobs one at a time (like one GPU worker) and the periodic loop checks on a timer."""

    def __init__(self, rt: Runtime, dispatcher: RecordingDispatcher) -> None:
        self.rt = rt
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="t2if-job")
        self.stop = threading.Event()
        self.futures: set[Future[None]] = set()
        dispatcher.listeners.append(self.submit)

    def submit(self, message: Message) -> None:
        kind = message.task.removeprefix("jobs.")
        if kind in HANDLERS:
            self._submit(kind, int(message.kwargs["job_id"]))

    def _submit(self, kind: str, job_id: int) -> None:
        if self.stop.is_set():
            return  # stays queued in the database: the next start hands it over
        future = self.pool.submit(self._run, kind, job_id)
        self.futures.add(future)
        future.add_done_callback(self.futures.discard)

    def _run(self, kind: str, job_id: int) -> None:
        try:
            execute(self.rt, kind, job_id)
        except Exception:
            log.exception("in-process job %s failed outside its handler", job_id)

    def start(self) -> None:
        reap_stale(self.rt)
        # nothing survives a restart in memory: hand queued jobs of an earlier run to this worker
        with self.rt.tx() as s:
            queued = list(s.execute(select(Job.kind, Job.id).where(Job.state == "queued").order_by(Job.id)))
        for kind, job_id in queued:
            self._submit(kind, job_id)
        threading.Thread(target=self._periodic, name="t2if-loop", daemon=True).start()

    def _periodic(self) -> None:
        last_reap = time.monotonic()
        while not self.stop.wait(self.rt.settings.retrain_check_seconds):
            try:
                started = check_retrain(self.rt)
                if started:
                    log.info("automatic reward training started: jobs %s", started)
                if time.monotonic() - last_reap > 30:
                    reap_stale(self.rt)
                    last_reap = time.monotonic()
            except Exception:
                log.exception("periodic loop check failed")

    def shutdown(self, timeout: float = 20.0) -> bool:
        """Stop promptly: queued jobs stay queued, the running one stops at its next check (between
        denoising steps) and goes back to the queue. True when nothing runs any more."""
        self.stop.set()
        self.rt.stopping.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
        _, running = wait_for(list(self.futures), timeout=timeout)
        return not running
