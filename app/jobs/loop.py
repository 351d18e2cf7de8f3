"""The closed loop: start reward training when enough new labels arrived, and chain fine-tuning
and evaluation after it as the prompt set's `auto_chain` says.

Called periodically by the workers (Celery beat / the demo's in-process loop), never per request:
one indexed count per prompt set that has a threshold.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.base import utcnow
from app.db.enums import ACTIVE_JOB_STATES
from app.db.models import Job, ModelVersion, PromptSet, Rating
from app.errors import AppError
from app.jobs import service

log = logging.getLogger("t2if.loop")
FAILED_BACKOFF = timedelta(minutes=10)


def new_usable_labels(session: Session, prompt_set_id: int) -> tuple[int, int, ModelVersion | None]:
    """(new usable labels since the reward version in use, rating id they count from, that version)."""
    current = service.latest_reward(session, prompt_set_id)
    since = int((current.label_snapshot or {}).get("max_rating_id", 0)) if current else 0
    n = session.scalar(
        select(func.count()).select_from(Rating)
        .where(Rating.prompt_set_id == prompt_set_id, Rating.id > since, Rating.label != "skip")
    ) or 0
    return n, since, current


def check_retrain(session: Session, settings: Settings) -> list[int]:
    """Enqueue train_reward for each prompt set past its threshold; returns the new job ids."""
    started = []
    for ps in session.scalars(select(PromptSet).where(PromptSet.retrain_threshold.is_not(None))):
        n, since, current = new_usable_labels(session, ps.id)
        if n < (ps.retrain_threshold or 0):
            continue
        busy = session.scalar(select(Job.id).where(Job.kind == "train_reward", Job.prompt_set_id == ps.id,
                                                   Job.state.in_(ACTIVE_JOB_STATES)))
        if busy is not None:
            continue
        recent_failure = session.scalar(
            select(Job.id).where(Job.kind == "train_reward", Job.prompt_set_id == ps.id, Job.state == "failed",
                                 Job.finished_at > utcnow() - FAILED_BACKOFF)
        )
        if recent_failure is not None:
            continue  # do not hammer a failing training; a person can retry it at once
        trigger = {"type": "auto", "reason": "new labels", "new_labels": n, "threshold": ps.retrain_threshold,
                   "since_rating_id": since, "since_reward_version_id": current.id if current else None}
        params: dict[str, Any] = {"prompt_set_id": ps.id, **(ps.auto_chain or {}).get("train_reward", {})}
        try:
            with session.begin_nested():
                job = service.create_job(session, settings, "train_reward", params, trigger=trigger)
        except AppError as exc:  # e.g. a concurrent checker won the race
            log.info("retrain for prompt set %s not started: %s", ps.id, exc.message)
            continue
        started.append(job.id)
    return started


def chain_after(session: Session, settings: Settings, job: Job, version: ModelVersion | None) -> int | None:
    """After an automatic train_reward: fine-tune (in a later round, the generator of the round before);
    after a chained fine-tune: evaluate, and with `next_round` the new generator draws the set's
    prompts for the next round's labels. Returns the first job made (the others are in the job log)."""
    if job.trigger.get("type") not in ("auto", "chain") or job.prompt_set_id is None or version is None:
        return None
    ps = session.get(PromptSet, job.prompt_set_id)
    if ps is None:  # no prompt set, no chain settings: nothing follows
        return None
    chain = ps.auto_chain or {}
    steps: list[tuple[str, dict[str, Any], dict[str, Any]]] = []  # (kind, params, trigger extras)
    if job.kind == "train_reward" and "finetune" in chain:
        params = {**chain["finetune"], "prompt_set_id": ps.id, "reward_version_id": version.id}
        if "next_round" in chain and "generator_version_id" not in params:
            current = round_generator(session, ps.id)
            if current is not None:
                params["generator_version_id"] = current
        steps.append(("finetune", params, {}))
    elif job.kind == "finetune":
        if "evaluate" in chain:
            params = {**chain["evaluate"], "candidate_version_id": version.id,
                      "baseline_version_id": version.parent_id}
            if "prompt_set_id" not in params:
                # never the training set itself: the evaluation's images would join the next fine-tune
                try:
                    with session.begin_nested():
                        params["prompt_set_id"] = evaluation_set_for(session, settings, ps).id
                except AppError as exc:
                    service.add_log(session, job.id, f"could not chain evaluate: {exc.message}", "warning")
                    params = {}
            if params:
                steps.append(("evaluate", params, {}))
        if "next_round" in chain:
            nxt = chain["next_round"]
            done = generator_round(session, version, ps.id)
            if done < int(nxt.get("rounds", 0)):
                params = {"prompt_set_id": ps.id, "generator_version_id": version.id,
                          **{k: v for k, v in nxt.items() if k != "rounds"}}
                steps.append(("generate", params, {"round": done + 1}))
            else:
                service.add_log(session, job.id, f"round {done} of {nxt.get('rounds')}: the last; no next round")
    made: list[int] = []
    for kind, params, extra in steps:
        trigger = {"type": "chain", "after_job": job.id, "after_kind": job.kind, "root": job.trigger, **extra}
        try:
            with session.begin_nested():
                nxt_job = service.create_job(session, settings, kind, params, trigger=trigger, parent_job_id=job.id)
        except AppError as exc:
            service.add_log(session, job.id, f"could not chain {kind}: {exc.message}", "warning")
            continue
        service.add_log(session, job.id, f"chained {kind} job {nxt_job.id}"
                        + (f" (round {extra['round']})" if "round" in extra else ""))
        made.append(nxt_job.id)
    return made[0] if made else None


def generator_round(session: Session, version: ModelVersion, prompt_set_id: int) -> int:
    """How many fine-tunes on this prompt set lead to `version`, itself included (the base: 0)."""
    n = 0
    v: ModelVersion | None = version
    while v is not None and v.kind == "generator" and v.prompt_set_id == prompt_set_id:
        n += 1
        v = session.get(ModelVersion, v.parent_id) if v.parent_id is not None else None
    return n


def round_generator(session: Session, prompt_set_id: int) -> int | None:
    """The generator that drew the set's current round: that of its newest finished next-round generate
    job (None before any: the first round fine-tunes the base)."""
    jobs = session.scalars(
        select(Job).where(Job.kind == "generate", Job.prompt_set_id == prompt_set_id, Job.state == "succeeded")
        .order_by(Job.id.desc()).limit(100)
    )
    for j in jobs:
        if (j.trigger or {}).get("type") == "chain" and "round" in j.trigger:
            gid = (j.params or {}).get("generator_version_id")
            return int(gid) if gid is not None else None
    return None


EVALUATION_SET_SIZE = 120  # the paper's: 60 seen and 60 unseen prompts


def evaluation_set_for(session: Session, settings: Settings, ps: PromptSet) -> PromptSet:
    """The evaluation prompt set of a training set whose chain names none: "<name> evaluation",
    made once from the templates (the paper's 120 prompts, half of unseen objects, in the training
    set's vocabulary) and reused by later rounds."""
    from app.errors import Conflict
    from app.prompts import service as prompt_sets
    from app.prompts.schemas import PromptSetCreate, TemplateSpec

    name = f"{ps.name[:189]} evaluation"
    existing = session.scalar(select(PromptSet).where(PromptSet.name == name))
    if existing is not None:
        if existing.purpose != "evaluation":
            raise Conflict(f"prompt set {name!r} exists and is not an evaluation set; name one in auto_chain.evaluate")
        return existing
    template = (ps.source or {}).get("template") or {}
    created = prompt_sets.create_prompt_set(session, settings, PromptSetCreate(
        name=name, purpose="evaluation", votes_per_comparison=ps.votes_per_comparison,
        template=TemplateSpec(size=EVALUATION_SET_SIZE, seed=int(template.get("seed", 0)) + 1,
                              vocabulary=template.get("vocabulary", "paper")),
        description=f"held-out prompts (seen and unseen objects) for the chained evaluations of {ps.name!r}",
    ), creator=None)
    row = session.get(PromptSet, created.id)
    assert row is not None
    return row
