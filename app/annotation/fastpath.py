"""Postgres fast path for the annotation hot loop (`GET /rating-tasks/next`, `POST /ratings`).

The portable engine (leases.py, ratings.py) builds ORM statements and objects; on Postgres the two
hot calls do the same work in a few hand-written statements instead, sent straight through the
request's psycopg connection (server-side prepared after a few uses):

- next:   one statement finds the caller's live leases and the candidate prompt sets; one CTE per
          set locks the fullest open images (FOR UPDATE SKIP LOCKED, ix_image_pool), takes their
          slots, creates / revives the leases and returns the task rows with the prompt text.
- submit: one CTE locks the image (lock order: item first), turns the caller's live lease into
          an answer and stores the rating. Anything unusual (a repeat, a lost or foreign lease)
          falls back to the portable `ratings.submit` in the same transaction, which holds the
          same locks and applies the same rules.

The rules are the engine's (see leases.py): exact open counts, lock order item-before-assignment,
the rate-limited expiry sweep, gold mixing (gold leases go through the portable code). Every
statement runs in the request's transaction, which commits before the response is sent.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from app.annotation import leases, ratings, statements
from app.annotation.leases import RATING
from app.annotation.schemas import RatingRead, RatingSubmit, RatingTask
from app.auth.identity import UserIdentity
from app.config import Settings
from app.db.base import utcnow
from app.db.session import UnitOfWork
from app.errors import NotFound
from app.images.service import image_url
from app.prompts.grammar import highlights


def usable(settings: Settings, dialect_name: str) -> bool:
    """Whether the route runs this fast path (T2IF_ANNOTATION_ENGINE=auto on Postgres)."""
    return settings.annotation_engine == "auto" and dialect_name == "postgresql"


# ---- next ---------------------------------------------------------------------------------------

_HELD = """
SELECT 0, a.id, a.image_id, a.lease_expires_at, p.text, p.category, i.prompt_set_id,
       NULL::float8, NULL::integer, a.leased_at, a.id
FROM rating_assignment a JOIN image i ON i.id = a.image_id JOIN prompt p ON p.id = i.prompt_id
WHERE a.annotator_id = %(uid)s AND a.state = 'leased' AND a.lease_expires_at > %(now)s {held_filter}
UNION ALL
SELECT 1, NULL, NULL, NULL, NULL, NULL, ps.id, ps.gold_rate, ps.lease_seconds, NULL, ps.id
FROM prompt_set ps WHERE {set_filter}
ORDER BY 1, 10, 11
"""
HELD_AND_SETS_SQL = _HELD.format(held_filter="", set_filter="ps.purpose = 'training'")
HELD_AND_SET_SQL = _HELD.format(held_filter="AND i.prompt_set_id = %(ps)s", set_filter="ps.id = %(ps)s")

# The engine's pick_open_items, then lease_and_take, in one round trip (see statements.py).
PICK_SQL = f"""
WITH pick AS ({statements.pick(RATING, uid="%(uid)s", n="%(n)s", where="AND i.prompt_set_id = %(ps)s")}
), lease AS ({statements.lease(RATING, uid="%(uid)s", now="%(now)s", expires="%(exp)s")}
), take AS ({statements.take(RATING)}
)
SELECT lease.id, lease.item_id, lease.lease_expires_at, p.text, p.category
FROM lease JOIN pick ON pick.id = lease.item_id JOIN prompt p ON p.id = pick.prompt_id
ORDER BY pick.open, pick.id
"""

TASKS_SQL = """
SELECT a.id, a.image_id, a.lease_expires_at, p.text, p.category, i.prompt_set_id
FROM rating_assignment a JOIN image i ON i.id = a.image_id JOIN prompt p ON p.id = i.prompt_id
WHERE a.id = ANY(%(ids)s)
"""


def task(aid: int, image_id: int, expires: datetime, text: str, category: str, ps_id: int) -> RatingTask:
    """A task from one lease row (both Postgres paths); the values come typed from the database."""
    return RatingTask.model_construct(assignment_id=aid, image_id=image_id, image_url=image_url(image_id),
                                      prompt=text, prompt_set_id=ps_id, category=category,
                                      lease_expires_at=expires, highlights=list(highlights(text)))


def next_tasks(uow: UnitOfWork, user_id: int, *, prompt_set_id: int | None = None, prefetch: int = 1,
               sweep_interval: float = 1.0, rng: random.Random | None = None,
               gold_draws: int | None = None) -> list[RatingTask]:
    """ratings.next_tasks on Postgres: the caller's live leases first, topped up to `prefetch`."""
    now = utcnow()
    if leases.sweep_due(RATING, sweep_interval):
        leases.sweep_expired(uow.session, RATING, now, min_interval=sweep_interval)
    cur = uow.cursor()
    params: dict[str, Any] = {"uid": user_id, "now": now, "ps": prompt_set_id}
    cur.execute(HELD_AND_SETS_SQL if prompt_set_id is None else HELD_AND_SET_SQL, params)
    held: list[RatingTask] = []
    sets: list[tuple[int, float, int]] = []
    for kind, aid, image_id, expires, text, category, ps_id, gold_rate, lease_seconds, _, _ in cur.fetchall():
        if kind == 0:
            held.append(task(aid, image_id, expires, text, category, ps_id))
        else:
            sets.append((ps_id, gold_rate, lease_seconds))
    need = max(0, prefetch - len(held))
    fresh: list[RatingTask] = []
    for ps_id, gold_rate, lease_seconds in sets if need else []:
        if gold_draws is not None:  # drawn by the hot path, for the first set
            n_gold, gold_draws = min(gold_draws, need), None
        else:
            n_gold = leases.gold_draws(need, gold_rate, rng) if gold_rate > 0 else 0
        if n_gold:
            # the portable code: gold is the rare case
            gold_ids = ratings.lease_gold(uow.session, user_id, ps_id, lease_seconds, n_gold, now)
            if gold_ids:
                cur.execute(TASKS_SQL, {"ids": gold_ids})
                by_id = {r[0]: r for r in cur.fetchall()}
                fresh += [task(*by_id[i]) for i in gold_ids]
                need -= len(gold_ids)
        if need:
            cur.execute(PICK_SQL, {"ps": ps_id, "uid": user_id, "n": need, "now": now,
                                   "exp": now + timedelta(seconds=lease_seconds)})
            picked = cur.fetchall()
            fresh += [task(aid, image_id, expires, text, category, ps_id)
                      for aid, image_id, expires, text, category in picked]
            need -= len(picked)
        if need and gold_rate > 0:
            # nothing open is left for this annotator: gold items not seen yet still measure them
            gold_ids = ratings.lease_gold(uow.session, user_id, ps_id, lease_seconds, need, now)
            if gold_ids:
                cur.execute(TASKS_SQL, {"ids": gold_ids})
                by_id = {r[0]: r for r in cur.fetchall()}
                fresh += [task(*by_id[i]) for i in gold_ids]
                need -= len(gold_ids)
        if not need:
            break
    mine = held + fresh
    if len(mine) < prefetch:
        # a call of the same annotator may have leased after this transaction's snapshot: answer
        # with what they hold now (each statement sees the latest commits)
        known = {t.assignment_id for t in mine}
        cur.execute(HELD_AND_SETS_SQL if prompt_set_id is None else HELD_AND_SET_SQL, params)
        mine += [task(aid, image_id, expires, text, category, ps_id)
                 for kind, aid, image_id, expires, text, category, ps_id, *_ in cur.fetchall()
                 if kind == 0 and aid not in known]
    return mine[:max(prefetch, 1)]


# ---- submit -------------------------------------------------------------------------------------

# One round trip: the common case of claim_answer (statements.claim), then the rating. The outer
# select answers (item, prompt set, new rating id): no row = no such assignment; a NULL rating id =
# not the caller's live lease, for the portable path.
_SUBMIT = """
WITH {claim}, r AS (
    INSERT INTO rating (assignment_id, image_id, prompt_set_id, annotator_id, label, skip_reason, duration_ms,
                        created_at)
    SELECT a.id, a.item_id, (SELECT prompt_set_id FROM item), %(uid)s, %(label)s, %(reason)s, %(dur)s, %(now)s
    FROM a
    RETURNING id
)
SELECT item.id, item.prompt_set_id, (SELECT r.id FROM r) FROM item
"""
SUBMIT_SQL = {skip: _SUBMIT.format(claim=statements.claim(RATING, aid="%(aid)s", uid="%(uid)s", now="%(now)s",
                                                          item_cols=", i.prompt_set_id", frees_slot=skip))
              for skip in (False, True)}


def submit(uow: UnitOfWork, user: UserIdentity, body: RatingSubmit) -> tuple[RatingRead, bool]:
    """ratings.submit on Postgres: same answers, same errors."""
    now = utcnow()
    cur = uow.cursor()
    reason = body.skip_reason.strip() if body.label == "skip" and body.skip_reason else None
    cur.execute(SUBMIT_SQL[body.label == "skip"], {"now": now, "aid": body.assignment_id, "uid": user.id,
                                                   "label": body.label, "reason": reason, "dur": body.duration_ms})
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"Assignment {body.assignment_id} does not exist or is not yours.")
    item_id, _, rating_id = row
    if rating_id is None:  # not a live lease of the caller: a repeat, a lost lease, someone else's
        return ratings.submit(uow.session, user, body)
    return RatingRead(id=rating_id, assignment_id=body.assignment_id, image_id=item_id, label=body.label,
                      skip_reason=reason, duration_ms=body.duration_ms, created_at=now), True
