"""The lease rules as Postgres statement text, each written once for both lease kinds.

The portable engine (leases.py) states the rules as ORM statements; the Postgres engine (hotpath.py)
needs them as SQL text they can combine with the caller check into one statement per
call. This module is that text, built per LeaseKind (rating: image / rating_assignment, comparison:
comparison / comparison_assignment) from the same table and column names the ORM uses, with the
gold test compiled from the ORM expression itself. A builder takes its inputs as SQL expressions
(a parameter, `%(uid)s` or `$1`, or a sub-select of an earlier CTE), so one text serves psycopg
and asyncpg.

Each builder is one rule of leases.py:
- pick:  pick_open_items  - lock up to n open items the caller has not answered or held, fullest
         first (an ordered range scan of the kind's partial pool index, FOR UPDATE SKIP LOCKED);
- lease: lease            - create the leases, or revive the caller's released ones;
- take:  lease_and_take   - one slot for each lease actually made (not each item picked);
- claim: claim_answer     - the common case: the item locked first (lock order item, then
         assignment), the caller's own leased assignment turned into an answer, and (a skip)
         its slot given back.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import aliased

from app.annotation.leases import LeaseKind


def _names(kind: LeaseKind) -> dict[str, str]:
    item = aliased(kind.item, name="i")
    return {"item": kind.item.__tablename__, "asg": kind.assignment.__tablename__, "fk": kind.item_fk,
            "open": kind.open_col,
            "not_gold": str(kind.not_gold(item).compile(dialect=postgresql.dialect()))}


def pick(kind: LeaseKind, *, uid: str, n: str, where: str = "") -> str:
    """leases.pick_open_items: (id, prompt_id, open) of up to `n` locked open items. The "seen it"
    test is a scalar probe of the (item, annotator) unique index, not an anti-join, so a generic
    plan keeps it per candidate at any table size."""
    t = _names(kind)
    return f"""
    SELECT i.id, i.prompt_id, i.{t['open']} AS open FROM {t['item']} i
    WHERE i.{t['open']} > 0 AND {t['not_gold']} {where}
      AND coalesce((SELECT a.state FROM {t['asg']} a WHERE a.{t['fk']} = i.id AND a.annotator_id = {uid}),
                   'released') = 'released'
    ORDER BY i.{t['open']}, i.id
    LIMIT {n}
    FOR UPDATE OF i SKIP LOCKED"""


def lease(kind: LeaseKind, *, uid: str, now: str, expires: str, extra: Mapping[str, str] | None = None,
          source: str = "pick") -> str:
    """leases.lease: leases on the items of CTE `source`, made or (the caller's released ones)
    revived. Returns (id, item_id, lease_expires_at, *extra columns). `extra`: further columns and
    their values per lease (the random left/right of a pair)."""
    t = _names(kind)
    extra = dict(extra or {})
    cols = ["state", "is_gold", "leased_at", "lease_expires_at", "submitted_at", *extra]
    values = ["'leased'", "false", now, expires, "NULL", *extra.values()]
    returning = "".join(f", ra.{c}" for c in extra)
    return f"""
    INSERT INTO {t['asg']} AS ra ({t['fk']}, annotator_id, {', '.join(cols)})
    SELECT {source}.id, {uid}, {', '.join(values)} FROM {source}
    ON CONFLICT ({t['fk']}, annotator_id) DO UPDATE
        SET {', '.join(f'{c} = excluded.{c}' for c in cols)}
        WHERE ra.state = 'released'
    RETURNING ra.id, ra.{t['fk']} AS item_id, ra.lease_expires_at{returning}"""


def take(kind: LeaseKind, *, source: str = "lease") -> str:
    """leases.lease_and_take: a slot for each lease made. A call of the same annotator that
    committed after this statement's snapshot may already hold a picked item (the row lock sees it,
    the "seen it" probe does not); the upsert then makes nothing, and no slot may be taken."""
    t = _names(kind)
    return f"""
    UPDATE {t['item']} SET {t['open']} = {t['item']}.{t['open']} - 1
    WHERE {t['item']}.id = ANY(ARRAY(SELECT item_id FROM {source}))"""


def claim(kind: LeaseKind, *, aid: str, uid: str, now: str, item_cols: str = "", guard: str = "",
          returning: str = "", frees_slot: bool = False) -> str:
    """leases.lock_assignment + claim_answer for the caller's own live (or expired, unreclaimed)
    lease: CTEs `item` (id{item_cols}), `a` (id, item_id, is_gold{returning}) and, for a skip,
    `slot`. `a` is empty when the assignment is not the caller's leased one: the portable code
    then decides (a repeat, a lost or foreign lease). `guard`: a further condition on the item
    (who may answer)."""
    t = _names(kind)
    slot = f""", slot AS (
    UPDATE {t['item']} SET {t['open']} = {t['item']}.{t['open']} + 1
    WHERE {t['item']}.id = (SELECT id FROM item) AND (SELECT NOT is_gold FROM a)
)""" if frees_slot else ""
    return f"""item AS (
    SELECT i.id{item_cols} FROM {t['item']} i
    WHERE i.id = (SELECT a.{t['fk']} FROM {t['asg']} a WHERE a.id = {aid}) {guard}
    FOR UPDATE OF i
), a AS (
    UPDATE {t['asg']} ra SET state = 'submitted', submitted_at = {now}
    WHERE ra.id = {aid} AND ra.{t['fk']} = (SELECT id FROM item) AND ra.annotator_id = {uid}
      AND ra.state = 'leased'
    RETURNING ra.id, ra.{t['fk']} AS item_id, ra.is_gold{returning}
){slot}"""


def held(kind: LeaseKind, *, uid: str, now: str, where: str = "", limit: str = "ALL",
         columns: str = "") -> str:
    """leases.held_leases: the caller's live leases, oldest first, (id, item_id, lease_expires_at,
    leased_at{columns}) with the item as `i`. The OFFSET 0 fence keeps the expiry test out of the
    index choice, which otherwise preferred a range scan of every annotator's live leases to the
    caller's own entries in the (annotator, state) index."""
    t = _names(kind)
    return f"""
    SELECT a.id, a.{t['fk']} AS item_id, a.lease_expires_at, a.leased_at{columns}
    FROM (SELECT * FROM {t['asg']} a WHERE a.annotator_id = {uid} AND a.state = 'leased' OFFSET 0) a
    JOIN {t['item']} i ON i.id = a.{t['fk']}
    WHERE a.lease_expires_at > {now} {where}
    ORDER BY a.leased_at, a.id
    LIMIT {limit}"""
