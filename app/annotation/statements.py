"""The lease rules as Postgres statement text, each written once for both lease kinds.

The portable engine (leases.py) states the rules as ORM statements; the Postgres engine (hotpath.py)
needs them as SQL text they can combine with the caller check into one statement per
call. This module is that text, built per LeaseKind (rating: image / rating_assignment, comparison:
comparison / comparison_assignment) from the same table and column names the ORM uses, with the
gold test compiled from the ORM expression itself. A builder takes its inputs as SQL expressions
(a parameter, `%(uid)s` or `$1`, or a sub-select of an earlier CTE), so one text serves psycopg
and asyncpg.

Each builder is one rule of leases.py:
- pick:  pick_open_items  - lock up to n open items the caller has not answered or held, in the
         kind's order (LeaseKind.order: fullest first; images then least certain), an ordered
         range scan of the kind's partial pool index, FOR UPDATE SKIP LOCKED;
- lease: lease            - create the leases, or revive the caller's released ones;
- take:  lease_and_take   - one slot for each (not gold) lease actually made (not each item picked);
- gold:  pick_gold        - up to n gold items the caller has not answered or held, by id;
- serve: serve            - one call's new leases from one pool: the gold slots drawn, the fullest
         open items, then unseen gold while gold is on and nothing open is left;
- claim: claim_answer     - the common case: the item locked first (lock order item, then
         assignment), the caller's own leased assignment turned into an answer, and (a skip)
         its slot given back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import aliased

from app.annotation.leases import LeaseKind


def _names(kind: LeaseKind) -> dict[str, str]:
    item = aliased(kind.item, name="i")
    return {"item": kind.item.__tablename__, "asg": kind.assignment.__tablename__, "fk": kind.item_fk,
            "open": kind.open_col,
            "not_gold": _sql(kind.not_gold(item)), "is_gold": _sql(kind.is_gold(item))}


def _sql(expression: Any) -> str:
    return str(expression.compile(dialect=postgresql.dialect()))


def _unseen(t: Mapping[str, str], uid: str) -> str:
    """Neither answered nor held by the caller: a scalar probe of the (item, annotator) unique
    index, not an anti-join, so a generic plan keeps it per candidate at any table size."""
    return f"""coalesce((SELECT a.state FROM {t['asg']} a WHERE a.{t['fk']} = i.id AND a.annotator_id = {uid}),
                   'released') = 'released'"""


def _order(kind: LeaseKind, alias: str) -> str:
    """The kind's hand-out order (LeaseKind.order) over the rows of `alias`."""
    return ", ".join(f"{alias}.{c}" for c in kind.order)


def pick(kind: LeaseKind, *, uid: str, n: str, where: str = "") -> str:
    """leases.pick_open_items: (id, prompt_id, *the kind's order columns) of up to `n` locked open
    items, in the kind's order."""
    t = _names(kind)
    extra = "".join(f", i.{c}" for c in kind.order if c not in ("id", "prompt_id"))
    return f"""
    SELECT i.id, i.prompt_id{extra} FROM {t['item']} i
    WHERE i.{t['open']} > 0 AND {t['not_gold']} {where}
      AND {_unseen(t, uid)}
    ORDER BY {_order(kind, "i")}
    LIMIT {n}
    FOR UPDATE OF i SKIP LOCKED"""


def lease(kind: LeaseKind, *, uid: str, now: str, expires: str, extra: Mapping[str, str] | None = None,
          source: str = "pick", gold: str = "false", order: str = "") -> str:
    """leases.lease: leases on the items of CTE `source`, made or (the caller's released ones)
    revived. Returns (id, item_id, lease_expires_at, is_gold, *extra columns). `gold`: whether a
    lease is a gold one (an expression over the `source` row); `extra`: further columns and their
    values per lease (the drawn left/right of a pair); `order`: the order the rows are inserted in
    (new leases take their ids in it, as leases.lease's rows do: held leases of one call come back
    in id order)."""
    t = _names(kind)
    extra = dict(extra or {})
    cols = ["state", "is_gold", "leased_at", "lease_expires_at", "submitted_at", *extra]
    values = ["'leased'", gold, now, expires, "NULL", *extra.values()]
    returning = "".join(f", ra.{c}" for c in extra)
    return f"""
    INSERT INTO {t['asg']} AS ra ({t['fk']}, annotator_id, {', '.join(cols)})
    SELECT {source}.id, {uid}, {', '.join(values)} FROM {source} {f'ORDER BY {order}' if order else ''}
    ON CONFLICT ({t['fk']}, annotator_id) DO UPDATE
        SET {', '.join(f'{c} = excluded.{c}' for c in cols)}
        WHERE ra.state = 'released'
    RETURNING ra.id, ra.{t['fk']} AS item_id, ra.lease_expires_at, ra.is_gold{returning}"""


def take(kind: LeaseKind, *, source: str = "lease") -> str:
    """leases.lease_and_take: a slot for each lease made (gold leases hold none). A call of the
    same annotator that committed after this statement's snapshot may already hold a picked item
    (the row lock sees it, the "seen it" probe does not); the upsert then makes nothing, and no
    slot may be taken."""
    t = _names(kind)
    return f"""
    UPDATE {t['item']} SET {t['open']} = {t['item']}.{t['open']} - 1
    WHERE {t['item']}.id = ANY(ARRAY(SELECT item_id FROM {source} WHERE NOT is_gold))"""


def gold(kind: LeaseKind, *, uid: str, n: str, where: str = "") -> str:
    """leases.pick_gold: (id, prompt_id, rn) of up to `n` gold items the caller has not answered
    or held, by id, numbered from 1. Not locked: gold leases hold no slot. An ordered range scan of
    the kind's partial gold index (ix_image_gold, ix_comparison_gold), stopped by the LIMIT."""
    t = _names(kind)
    return f"""
    SELECT g.id, g.prompt_id, row_number() OVER (ORDER BY g.id) AS rn FROM (
        SELECT i.id, i.prompt_id FROM {t['item']} i
        WHERE {t['is_gold']} {where} AND {_unseen(t, uid)}
        ORDER BY i.id
        LIMIT {n}) g"""


def serve(kind: LeaseKind, *, uid: str, want: str, rate: str, draws: str, now: str, expires: str,
          where: str = "", sides: str | None = None) -> str:
    """leases.serve as CTEs: `gold_cand` (unseen gold, up to `want`, numbered `rn`), `gold_first`
    (the gold slots drawn: those of the first `want` uniforms in the array `draws` below `rate`,
    as Draws.n_gold, that found an item), `pick` (the rest, fullest first), `new` (id, prompt_id,
    pos, is_gold: the items to lease, numbered 1.. in the order leases.serve leases them: drawn
    gold, picked, then unseen gold filling what is still short while the rate is above 0),
    `lease` and `take`. `sides`: the array of drawn sides of a pair (new item at pos gets
    sides[pos]). `want` and `rate` are SQL expressions evaluated once (parameters or sub-selects)."""
    n_gold = (f"(SELECT count(*) FROM unnest({draws}::float8[]) WITH ORDINALITY AS d(u, k) "
              f"WHERE d.k <= {want} AND d.u < {rate})")
    extra = {"left_is_a": f"({sides}::bool[])[new.pos::int]"} if sides else None
    return f"""gold_cand AS ({gold(kind, uid=uid, n=f"CASE WHEN {rate} > 0 THEN {want} ELSE 0 END", where=where)}
), gold_first AS (
    SELECT count(*) AS n FROM gold_cand WHERE rn <= {n_gold}
), pick AS ({pick(kind, uid=uid, n=f"{want} - (SELECT n FROM gold_first)", where=where)}
), new AS (
    SELECT c.id, c.prompt_id, CASE WHEN c.rn <= f.n THEN c.rn ELSE c.rn + (SELECT count(*) FROM pick) END AS pos,
           true AS is_gold
    FROM gold_cand c, gold_first f
    WHERE c.rn <= greatest(f.n, {want} - (SELECT count(*) FROM pick))
    UNION ALL
    SELECT p.id, p.prompt_id, f.n + row_number() OVER (ORDER BY {_order(kind, "p")}), false
    FROM pick p, gold_first f
), lease AS ({lease(kind, uid=uid, now=now, expires=expires, extra=extra, source="new", gold="new.is_gold",
                   order="new.pos")}
), take AS ({take(kind)}
)"""


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
