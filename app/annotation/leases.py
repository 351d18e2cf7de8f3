"""The lease engine shared by ratings and comparisons.

An item (image or comparison) wants N answers from N distinct annotators. Its `open` counter is
N minus stored usable answers minus live leases, so "next" is one indexed, ordered scan of items
with open > 0 and never hands out more than N. Postgres row locks keep it exact under
concurrency; SKIP LOCKED keeps concurrent callers from waiting on each other.

Lock order, everywhere: the item row first, then its assignment rows. Every path (next, submit,
undo, sweep) follows it, so these transactions cannot deadlock one another.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, not_, select, update
from sqlalchemy.orm import Session

from app.db.models import Comparison, ComparisonAssignment, Image, RatingAssignment
from app.db.session import upsert_insert
from app.errors import Conflict, NotFound


@dataclass(frozen=True)
class LeaseKind:
    name: str
    item: Any  # ORM class of the item
    assignment: Any  # ORM class of the lease
    item_fk: str  # assignment column pointing at the item
    open_col: str  # item column: open slots
    wanted_col: str  # item column: answers wanted
    # an item (the ORM class or an alias of it) that is not gold: only those have slots to hand out
    not_gold: Callable[[Any], Any]
    # the order open items are handed out in: item columns, each ascending. Every kind starts with
    # its open count (fullest first, so items complete before new ones start) and ends with the id;
    # its pool index has the same columns, so "next" is one ordered range scan.
    order: tuple[str, ...]
    # whether a lease records a drawn side (a pair's left/right, blind)
    sided: bool = False

    def is_gold(self, item: Any) -> Any:
        return not_(self.not_gold(item))

    @property
    def fk(self) -> Any:
        return getattr(self.assignment, self.item_fk)

    @property
    def open(self) -> Any:
        return getattr(self.item, self.open_col)

    @property
    def wanted(self) -> Any:
        return getattr(self.item, self.wanted_col)


# Images: among equally full ones, the least certain first (Image.certainty; 0 unless a reward
# model ranked the set, so an unranked set goes by id).
RATING = LeaseKind("rating", Image, RatingAssignment, "image_id", "ratings_open", "ratings_wanted",
                   lambda i: i.gold_label.is_(None), order=("ratings_open", "certainty", "id"))
COMPARISON = LeaseKind("comparison", Comparison, ComparisonAssignment, "comparison_id", "votes_open", "votes_wanted",
                       lambda i: and_(i.gold_alignment.is_(None), i.gold_fidelity.is_(None)),
                       order=("votes_open", "id"), sided=True)


class LeaseLost(Conflict):
    code = "lease_lost"

    def __init__(self) -> None:
        super().__init__(
            "Your time on this item ran out and it was handed to another annotator, so this answer was not "
            "stored. Nothing else was lost; carry on with the next item."
        )


# ---- expired leases -----------------------------------------------------------------------------

_last_sweep: dict[str, float] = {}


def sweep_due(kind: LeaseKind, min_interval: float) -> bool:
    """Whether sweep_expired would run now (lets a caller skip setting up for it)."""
    return min_interval <= 0 or time.monotonic() - _last_sweep.get(kind.name, -1e9) >= min_interval


def sweep_expired(session: Session, kind: LeaseKind, now: datetime, *, min_interval: float = 1.0,
                  limit: int = 500) -> int:
    """Return expired leases to the pool. Cheap when nothing expired (a partial-index range scan);
    rate-limited per process so a busy server does not repeat it on every request."""
    mono = time.monotonic()
    if min_interval > 0 and mono - _last_sweep.get(kind.name, -1e9) < min_interval:
        return 0
    _last_sweep[kind.name] = mono
    A = kind.assignment
    rows = session.execute(
        select(A.id, kind.fk).where(A.state == "leased", A.lease_expires_at <= now)
        .order_by(A.lease_expires_at).limit(limit)
    ).all()
    if not rows:
        return 0
    item_ids = sorted({r[1] for r in rows})
    # item first (lock order); skip items another transaction is working on, the next sweep gets them
    locked = set(session.scalars(
        select(kind.item.id).where(kind.item.id.in_(item_ids)).order_by(kind.item.id)
        .with_for_update(skip_locked=True)
    ))
    candidates = [r[0] for r in rows if r[1] in locked]
    if not candidates:
        return 0
    released = session.execute(
        update(A).where(A.id.in_(candidates), A.state == "leased", A.lease_expires_at <= now)
        .values(state="released").returning(kind.fk, A.is_gold)
    ).all()
    _return_slots(session, kind, released)
    return len(released)


def _return_slots(session: Session, kind: LeaseKind, released: Sequence[Any]) -> None:
    """Give the slots of released (item id, is_gold) leases back to their items (locked by the caller)."""
    per_item = Counter(item_id for item_id, is_gold in released if not is_gold)
    for item_id, n in sorted(per_item.items()):
        session.execute(
            update(kind.item).where(kind.item.id == item_id)
            .values({kind.open_col: case((kind.open + n > kind.wanted, kind.wanted), else_=kind.open + n)})
        )


def release(session: Session, kind: LeaseKind, annotator_id: int, assignment_ids: Sequence[int]) -> int:
    """Hand back the caller's own unanswered leases (a page that goes away), as an expiry would:
    the item gets its slot back at once instead of after the lease time. Answered, foreign and
    unknown assignments are left alone. Lock order as everywhere: items first, then assignments."""
    if not assignment_ids:
        return 0
    A = kind.assignment
    rows = session.execute(
        select(A.id, kind.fk).where(A.id.in_(list(assignment_ids)), A.annotator_id == annotator_id,
                                    A.state == "leased")
    ).all()
    if not rows:
        return 0
    session.execute(select(kind.item.id).where(kind.item.id.in_(sorted({r[1] for r in rows})))
                    .order_by(kind.item.id).with_for_update())
    released = session.execute(
        update(A).where(A.id.in_([r[0] for r in rows]), A.annotator_id == annotator_id, A.state == "leased")
        .values(state="released").returning(kind.fk, A.is_gold)
    ).all()
    _return_slots(session, kind, released)
    return len(released)


# ---- handing out --------------------------------------------------------------------------------


def held_leases(session: Session, kind: LeaseKind, annotator_id: int, now: datetime, *filters: Any) -> list[Any]:
    A = kind.assignment
    return list(session.scalars(
        select(A).join(kind.item, kind.item.id == kind.fk)
        .where(A.annotator_id == annotator_id, A.state == "leased", A.lease_expires_at > now, *filters)
        .order_by(A.leased_at, A.id)
    ))


def with_held_now(session: Session, kind: LeaseKind, annotator_id: int, now: datetime, mine: list[Any],
                  prefetch: int, *filters: Any) -> list[Any]:
    """`mine` (held + new leases) topped up, when it came up short, with the annotator's other live
    leases: a call of the same annotator may have leased after this transaction's snapshot, and
    that lease is the answer rather than "nothing left" (each statement sees the latest commits)."""
    if len(mine) >= prefetch:
        return mine
    known = {a.id for a in mine}
    return mine + [a for a in held_leases(session, kind, annotator_id, now, *filters) if a.id not in known]


def pick_open_items(session: Session, kind: LeaseKind, annotator_id: int, n: int, *filters: Any) -> list[int]:
    """Lock up to n open (not gold) items this annotator has not answered or held, in the kind's
    order: fullest first (statements.pick on Postgres)."""
    A = kind.assignment
    mine = exists().where(kind.fk == kind.item.id, A.annotator_id == annotator_id, A.state != "released")
    return list(session.scalars(
        select(kind.item.id)
        .where(kind.open > 0, kind.not_gold(kind.item), ~mine, *filters)
        .order_by(*(getattr(kind.item, c) for c in kind.order))
        .limit(n)
        .with_for_update(skip_locked=True)
    ))


def take_slots(session: Session, kind: LeaseKind, item_ids: Sequence[int]) -> None:
    if item_ids:
        session.execute(update(kind.item).where(kind.item.id.in_(item_ids)).values({kind.open_col: kind.open - 1}))


def lease(session: Session, kind: LeaseKind, annotator_id: int, item_ids: Sequence[int], now: datetime,
          lease_seconds: int, *, is_gold: bool = False, extra: Any = None) -> list[int]:
    """Create (or revive this annotator's released) leases on locked items; returns assignment ids.

    `extra(item_id)` gives further column values per lease (the random left/right of a pair).
    """
    if not item_ids:
        return []
    return [aid for aid, _ in _upsert_leases(session, kind, annotator_id, item_ids, now, lease_seconds, is_gold,
                                             extra)]


def _upsert_leases(session: Session, kind: LeaseKind, annotator_id: int, item_ids: Sequence[int], now: datetime,
                   lease_seconds: int, is_gold: bool, extra: Any) -> list[tuple[int, int]]:
    """(assignment id, item id) of the leases made or revived; an item the annotator already
    holds or answered gets none."""
    expires = now + timedelta(seconds=lease_seconds)
    values = [
        {kind.item_fk: item_id, "annotator_id": annotator_id, "state": "leased", "is_gold": is_gold,
         "leased_at": now, "lease_expires_at": expires, "submitted_at": None, **(extra(item_id) if extra else {})}
        for item_id in item_ids
    ]
    insert = upsert_insert(session)
    A = kind.assignment
    stmt = insert(A).values(values)
    revive = {k: stmt.excluded[k] for k in values[0] if k not in (kind.item_fk, "annotator_id")}
    stmt = stmt.on_conflict_do_update(
        index_elements=[kind.item_fk, "annotator_id"], set_=revive, where=(A.state == "released")
    ).returning(A.id, kind.fk)
    return [(aid, item_id) for aid, item_id in session.execute(stmt)]


def lease_and_take(session: Session, kind: LeaseKind, annotator_id: int, item_ids: Sequence[int], now: datetime,
                   lease_seconds: int, *, extra: Any = None) -> list[int]:
    """Lease locked open items (pick_open_items) and take a slot on each item actually leased.

    A call of the same annotator that committed after this transaction's snapshot may already
    hold one of the items: the row lock sees the item's new count, the "seen it" check does not
    see that lease, and the upsert then makes nothing. Taking the slot anyway would leave the
    item one answer short for good, so slots follow the leases made, not the items picked.
    """
    if not item_ids:
        return []
    rows = _upsert_leases(session, kind, annotator_id, item_ids, now, lease_seconds, False, extra)
    take_slots(session, kind, [item_id for _, item_id in rows])
    return [aid for aid, _ in rows]


@dataclass(frozen=True)
class Draws:
    """A `next` call's random numbers, drawn before anything is leased, one per slot it may fill:
    the k-th slot wanted is a gold one when gold[k] < the gold rate (so the rate holds per slot,
    whatever is held), and the k-th new lease of a pair shows image a on the left when left[k].
    Drawn once per call, by whichever engine serves it (the hot path hands its draws on), so a
    seeded generator gives the same stream on every engine."""

    gold: list[float]
    left: list[bool]

    def n_gold(self, need: int, rate: float) -> int:
        """Gold slots among the first `need` (statements.serve counts the same in SQL)."""
        return sum(1 for u in self.gold[:need] if u < rate) if rate > 0 else 0

    def gold_served(self) -> Draws:
        """The same draws once this call's gold was decided (its leases committed): no more gold."""
        return Draws([], self.left)


def draw(kind: LeaseKind, n: int, rng: random.Random | None = None) -> Draws:
    """One call's draws for n slots: gold first, then (pairs) sides; the module's generator by default."""
    u = rng.random if rng is not None else random.random
    gold = [u() for _ in range(n)]
    return Draws(gold, [u() < 0.5 for _ in range(n)] if kind.sided else [])


def pick_gold(session: Session, kind: LeaseKind, annotator_id: int, n: int, *filters: Any) -> list[int]:
    """Up to n gold items this annotator has not answered or held, by id (statements.gold on
    Postgres). Not locked: gold leases hold no slot (gold goes to everyone)."""
    if n <= 0:
        return []
    A = kind.assignment
    mine = exists().where(kind.fk == kind.item.id, A.annotator_id == annotator_id, A.state != "released")
    return list(session.scalars(
        select(kind.item.id).where(kind.is_gold(kind.item), ~mine, *filters).order_by(kind.item.id).limit(n)
    ))


def serve(session: Session, kind: LeaseKind, annotator_id: int, need: int, draws: Draws, gold_rate: float,
          now: datetime, lease_seconds: int, *filters: Any) -> list[int]:
    """New leases for up to `need` slots from one pool (a prompt set, an evaluation's pairs), in
    this order: the gold slots drawn (unseen gold items, by id), then the fullest open items, then,
    while gold is on and nothing open is left for this annotator, more unseen gold (it still
    measures them). Gold does not count toward the N answers an item wants. The k-th new lease of
    a pair gets side draws.left[k], k counted over the items found (statements.serve is the same
    on Postgres, in one statement)."""
    made: list[int] = []
    found = 0

    def sides(item_ids: list[int]) -> Callable[[int], dict[str, Any]] | None:
        if not kind.sided:
            return None
        pos = {item_id: found + k for k, item_id in enumerate(item_ids)}
        return lambda item_id: {"left_is_a": draws.left[pos[item_id]]}

    def gold(n: int) -> None:
        nonlocal need, found
        ids = pick_gold(session, kind, annotator_id, n, *filters)
        got = lease(session, kind, annotator_id, ids, now, lease_seconds, is_gold=True, extra=sides(ids))
        made.extend(got)
        found += len(ids)
        need -= len(got)

    gold(draws.n_gold(need, gold_rate))
    if need > 0:
        picked = pick_open_items(session, kind, annotator_id, need, *filters)
        got = lease_and_take(session, kind, annotator_id, picked, now, lease_seconds, extra=sides(picked))
        made.extend(got)
        found += len(picked)
        need -= len(got)
    if need > 0 and gold_rate > 0:
        gold(need)
    return made


def recount_open(session: Session, kind: LeaseKind, item: Any, *, answered: int, is_gold: bool) -> None:
    """open = wanted - usable answers stored - leases holding a slot, after an item's gold mark changed.

    Gold leases hold no slot (gold goes to everyone), so answers given while the item was gold did
    not lower its open count. Once it is no longer gold, every lease still out (expired or not: a
    late answer on it may still be accepted) must hold a slot, or its answer would land on top of
    N others; its gold flag is cleared so that submit, skip and the sweep account for it."""
    A = kind.assignment
    if not is_gold:
        session.execute(update(A).where(kind.fk == item.id, A.state == "leased", A.is_gold.is_(True))
                        .values(is_gold=False))
    out = session.scalar(
        select(func.count()).where(kind.fk == item.id, A.state == "leased", A.is_gold.is_(False))
    ) or 0
    wanted = getattr(item, kind.wanted_col)
    setattr(item, kind.open_col, max(0, min(wanted, wanted - answered - out)))


# ---- answering ----------------------------------------------------------------------------------


def lock_assignment(session: Session, kind: LeaseKind, assignment_id: int, annotator_id: int) -> tuple[Any, Any]:
    """Lock (item, assignment) in the engine's lock order; someone else's lease is 'not found'."""
    A = kind.assignment
    item = session.scalars(
        select(kind.item).where(kind.item.id == select(kind.fk).where(A.id == assignment_id).scalar_subquery())
        .with_for_update()
    ).first()
    assignment = session.scalars(select(A).where(A.id == assignment_id).with_for_update()).first()
    if assignment is None or item is None or assignment.annotator_id != annotator_id:
        raise NotFound(f"Assignment {assignment_id} does not exist or is not yours.")
    return item, assignment


def claim_answer(kind: LeaseKind, item: Any, assignment: Any, now: datetime, *, uses_slot: bool) -> None:
    """Turn a lease into an answer, keeping the item's open count exact.

    A live lease (or one that expired but nobody reclaimed yet) already holds a slot. A lease that
    was reclaimed holds none: the answer is accepted only if a slot is still free, else LeaseLost.
    """
    if assignment.state == "leased":
        if not uses_slot and not assignment.is_gold:
            setattr(item, kind.open_col, getattr(item, kind.open_col) + 1)  # a skip frees its slot
    elif assignment.state == "released":
        if uses_slot and not assignment.is_gold:
            if getattr(item, kind.open_col) <= 0:
                raise LeaseLost()
            setattr(item, kind.open_col, getattr(item, kind.open_col) - 1)
    else:  # pragma: no cover - callers handle 'submitted' before
        raise Conflict("This item was already answered.")
    assignment.state = "submitted"
    assignment.submitted_at = now


def unclaim_answer(kind: LeaseKind, item: Any, assignment: Any, now: datetime, *, used_slot: bool) -> None:
    """Undo: the answer goes, the lease comes back (while its time holds)."""
    if assignment.state != "submitted":
        raise Conflict("There is no stored answer on this assignment to undo.", code="nothing_to_undo")
    if assignment.lease_expires_at <= now:
        raise Conflict("Too late to undo: the time on this item has run out.", code="undo_expired")
    if not used_slot and not assignment.is_gold:
        if getattr(item, kind.open_col) <= 0:
            raise Conflict("Too late to undo: the item was handed to someone else.", code="undo_taken")
        setattr(item, kind.open_col, getattr(item, kind.open_col) - 1)
    assignment.state = "leased"
    assignment.submitted_at = None
