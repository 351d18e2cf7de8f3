"""The annotation loop's calls served straight from ASGI on Postgres, one statement each.

`GET /api/v1/rating-tasks/next`, `POST /api/v1/ratings`, `GET /api/v1/comparison-tasks/next` and
`POST /api/v1/comparison-votes` are most of the service's traffic. On Postgres, `HotPathMiddleware`
answers the common case of each itself, before FastAPI's routing:

- one asyncpg statement per call (a prepared, generic plan; its own transaction, so the commit
  rides in the same round trip), which checks the caller (bearer token, or browser session and
  its CSRF token), and
    - next:   returns the caller's live leases, or serves new ones from the pool (images of the
              first candidate prompt set; pairs, of the evaluation asked for) as statements.serve
              does: the gold slots drawn (unseen gold by id, on the kind's gold index), the
              fullest open items (`FOR UPDATE SKIP LOCKED` on the kind's pool index, their slots
              taken), then unseen gold while the pool is dry for the caller; each lease of a pair
              records its drawn side. The draws (leases.Draws) come from `HotPath.rng`, the app's
              generator that the route draws from too;
    - submit: locks the item (item first, as everywhere), turns the caller's live lease into
              the answer, gives a skip's slot back and stores the rating or vote.
  The lease rules in these statements are statements.py's, the same text the sync fast path
  runs and the same rules leases.py states for the portable engine.
- no threadpool hop, no ORM, no dependency solving; a 2xx is sent after the commit.

Everything else is handed to the FastAPI route (the sync fast path on Postgres, the portable
engine elsewhere or with T2IF_ANNOTATION_ENGINE=portable, which also turns this path off), which
gives the same answers and every error message:
no credentials or a bad cookie, a bad token, session, CSRF token or role (401 / 403), a query or body that
does not validate (422), a submit that is not the caller's live lease (an identical repeat, a
conflicting one, a lost lease, someone else's: 200 / 409 / 404), a first prompt set that ran dry
(gold included) for this annotator while other training sets remain, a `next` that raced with
the caller's own call, and any database error here (submit is idempotent per assignment, so a
retry in the route is safe). Gold is not a reason: the statement serves it. A `next` hands its
draws on in `scope["state"]["lease_draws"]`, so the route does not draw again; leases the
statement took before handing over are committed (their gold with them: the draws say so) and
come back to the route as held leases.

Expired leases are swept by the portable code, rate-limited per process as before.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.annotation import leases, statements
from app.annotation.leases import COMPARISON, RATING
from app.annotation.ratings import MAX_PREFETCH
from app.annotation.schemas import RatingRead, RatingSubmit, RatingTask, RatingTaskBatch
from app.auth.credentials import ANNOTATING_ROLES, presented
from app.auth.liveness import live_sql
from app.auth.secrets import sha256_hex
from app.auth.service import TOUCH_INTERVAL
from app.comparisons.schemas import ComparisonTask, ComparisonTaskBatch, PairImage, VoteRead, VoteSubmit
from app.comparisons.service import pair_image_url
from app.config import Settings
from app.db.base import utcnow
from app.db.session import transaction
from app.errors import NotAuthenticated
from app.images.service import image_url
from app.metrics import Registry, annotation_requests
from app.prompts.grammar import highlights

log = logging.getLogger("t2if.hotpath")

NEXT_PATH = "/api/v1/rating-tasks/next"
SUBMIT_PATH = "/api/v1/ratings"
NEXT_PAIR_PATH = "/api/v1/comparison-tasks/next"
VOTE_PATH = "/api/v1/comparison-votes"
HOT_PATHS = frozenset({NEXT_PATH, SUBMIT_PATH, NEXT_PAIR_PATH, VOTE_PATH})
MAX_BODY = 16 * 1024  # a rating is ~100 bytes; anything bigger goes to the route (and its limits)

# The caller, as deps.resolve_principal resolves it. $1 sha256 of the bearer token or session secret, $2 now.
# `cred` / `seen` let the caller touch last_used_at / last_seen_at (at most once a minute) in a
# separate statement, so the hot statements do not carry an UPDATE of api_token / user_session.
# Who may call is auth's definition (auth.liveness), compiled to SQL.
_TOKEN_CALLER = f"""
caller AS (
    SELECT u.id AS uid, u.role, t.id::text AS cred, t.last_used_at AS seen
    FROM api_token t JOIN user_account u ON u.id = t.user_id
    WHERE t.token_hash = $1 AND {live_sql("token", "$2")}
)"""
# A browser session (signed cookie, checked before): a state-changing call must also bring the
# session's CSRF token, compared as digests so the comparison takes the same time whatever the
# guess. A wrong one finds no caller, and the route answers 403 csrf_failed.
_SESSION_CALLER = """
caller AS (
    SELECT u.id AS uid, u.role, s.id AS cred, s.last_seen_at AS seen
    FROM user_session s JOIN user_account u ON u.id = s.user_id
    WHERE s.id = $1 AND """ + live_sql("session", "$2") + """ {csrf}
)"""
_CSRF = "AND sha256(convert_to(s.csrf_token, 'UTF8')) = sha256(convert_to(${n}::text, 'UTF8'))"
TOUCH_TOKEN_SQL = ("UPDATE api_token SET last_used_at = $2 "
                   "WHERE id = $1::bigint AND (last_used_at IS NULL OR last_used_at < $3)")
TOUCH_SESSION_SQL = ("UPDATE user_session SET last_seen_at = $2 "
                     "WHERE id = $1 AND (last_seen_at IS NULL OR last_seen_at < $3)")

# The lease rules come from statements.py (the same text as the sync fast path's), behind the
# caller check. Scalar sub-selects (InitPlans) feed the index scans their keys, so the generic plan
# is an ordered range scan of the kind's pool index stopped by the LIMIT at any table size. (Cached
# plans are rebuilt when ANALYZE updates a table's statistics, and when a pooled connection is
# replaced.)
_UID, _NOW = "(SELECT uid FROM caller)", "$2"
_MAY = "(SELECT role FROM caller) = ANY($5::text[])"

# Ratings. $3 prompt set (NULL: every training set), $4 prefetch, $5 roles that may annotate, $6 the
# gold draws, one uniform number per slot (leases.Draws, from HotPath.rng: seedable; a session's
# CSRF token is $7). The new leases are statements.serve's: gold slots drawn, the fullest open
# images, unseen gold filling the rest, of the first candidate set.
# Output: one header row (kind 0: caller, items to lease, first candidate set, slots wanted), then
# the held leases (kind 1), then the new ones (kind 2, in serve's order), each with its prompt.
_NEXT = f"""
WITH {{caller}}, held AS ({statements.held(RATING, uid=_UID, now=_NOW, limit="$4",
                                           where="AND ($3::bigint IS NULL OR i.prompt_set_id = $3)",
                                           columns=", i.prompt_set_id, i.prompt_id")}
), sets AS (
    SELECT ps.id, ps.gold_rate, ps.lease_seconds, count(*) OVER () AS n_sets FROM prompt_set ps
    WHERE CASE WHEN $3::bigint IS NULL THEN ps.purpose = 'training' ELSE ps.id = $3 END
    ORDER BY ps.id
    LIMIT 1
), want AS (
    SELECT CASE WHEN {_MAY} THEN greatest($4 - (SELECT count(*) FROM held), 0) ELSE 0 END AS n
), {statements.serve(RATING, uid=_UID, want="(SELECT n FROM want)", rate="(SELECT gold_rate FROM sets)",
                     draws="$6", now=_NOW, expires="$2 + make_interval(secs => (SELECT lease_seconds FROM sets))",
                     where="AND i.prompt_set_id = (SELECT id FROM sets)")}
SELECT 0 AS kind, c.uid AS id, (SELECT count(*) FROM new) AS image_id, c.seen AS expires, c.role AS text,
       c.cred AS category, s.id AS prompt_set_id, s.n_sets, (SELECT n FROM want) AS want
FROM (SELECT 1) one LEFT JOIN caller c ON true LEFT JOIN sets s ON true
UNION ALL
(SELECT 1, h.id, h.item_id, h.lease_expires_at, (SELECT p.text FROM prompt p WHERE p.id = h.prompt_id),
        (SELECT p.category FROM prompt p WHERE p.id = h.prompt_id), h.prompt_set_id, NULL, NULL
 FROM held h ORDER BY h.leased_at, h.id)
UNION ALL
(SELECT 2, l.id, l.item_id, l.lease_expires_at, (SELECT p.text FROM prompt p WHERE p.id = new.prompt_id),
        (SELECT p.category FROM prompt p WHERE p.id = new.prompt_id), (SELECT id FROM sets), NULL, NULL
 FROM lease l JOIN new ON new.id = l.item_id
 ORDER BY new.pos)
"""

# The rating submit behind the caller check: $3 assignment, $4 label, $5 skip reason, $6 duration,
# $7 roles that may annotate (a session's CSRF token is $8). A good / bad answer keeps the slot its
# lease holds; only the skip variant carries the UPDATE that gives the slot back.
# Output: (caller id, role, credential id, last seen, new rating id or NULL, image id).
_SUBMIT = """
WITH {caller}, {claim}, r AS (
    INSERT INTO rating (assignment_id, image_id, prompt_set_id, annotator_id, label, skip_reason, duration_ms,
                        created_at)
    SELECT a.id, a.item_id, (SELECT prompt_set_id FROM item), (SELECT uid FROM caller), $4, $5, $6, $2
    FROM a
    RETURNING id
)
SELECT c.uid, c.role, c.cred, c.seen, (SELECT id FROM r), (SELECT id FROM item)
FROM (SELECT 1) one LEFT JOIN caller c ON true
"""
_CLAIM = {skip: statements.claim(RATING, aid="$3", uid=_UID, now=_NOW, item_cols=", i.prompt_set_id",
                                 guard="AND (SELECT role FROM caller) = ANY($7::text[])", frees_slot=skip)
          for skip in (False, True)}

# Comparisons, the same shape. $3 evaluation (NULL: any), $4 prefetch, $5 roles that may annotate,
# $6 the gold rate, $7 lease seconds, $8 the gold draws, $9 the drawn sides (leases.Draws; a
# session's CSRF token is $10). Each new lease records its side (blind pairs). Rows: header (kind
# 0: caller, pairs to lease, slots wanted, credential), then held (1) and new (2) leases with the
# prompt, the recorded side and the number of images a side.
_SIDES = """(SELECT p.text FROM prompt p JOIN comparison c ON c.prompt_id = p.id WHERE c.id = {x}.item_id),
        {x}.left_is_a,
        (SELECT count(*) FROM comparison_image ci WHERE ci.comparison_id = {x}.item_id AND ci.side = 'a'),
        (SELECT count(*) FROM comparison_image ci WHERE ci.comparison_id = {x}.item_id AND ci.side = 'b')"""
_NEXT_PAIR = f"""
WITH {{caller}}, held AS ({statements.held(COMPARISON, uid=_UID, now=_NOW, limit="$4",
                                           where="AND ($3::bigint IS NULL OR i.evaluation_id = $3)",
                                           columns=", a.left_is_a")}
), want AS (
    SELECT CASE WHEN {_MAY} THEN greatest($4 - (SELECT count(*) FROM held), 0) ELSE 0 END AS n
), {statements.serve(COMPARISON, uid=_UID, want="(SELECT n FROM want)", rate="$6::float8", draws="$8", now=_NOW,
                     expires="$2 + make_interval(secs => $7)", sides="$9",
                     where="AND ($3::bigint IS NULL OR i.evaluation_id = $3)")}
SELECT 0 AS kind, c.uid AS id, (SELECT count(*) FROM new) AS picked, c.seen AS expires, c.role AS text,
       NULL::boolean AS left_is_a, (SELECT n FROM want) AS n_a, NULL::bigint AS n_b, c.cred
FROM (SELECT 1) one LEFT JOIN caller c ON true
UNION ALL
(SELECT 1, h.id, NULL, h.lease_expires_at, {_SIDES.format(x="h")}, NULL FROM held h ORDER BY h.leased_at, h.id)
UNION ALL
(SELECT 2, l.id, NULL, l.lease_expires_at, {_SIDES.format(x="l")}, NULL
 FROM lease l JOIN new ON new.id = l.item_id ORDER BY new.pos)
"""
# $3 assignment, $4 / $5 alignment / fidelity as seen on screen, $6 duration, $7 roles (CSRF $8);
# the answer is stored in model terms (a / b), through the side recorded on the lease.
_TO_MODEL = """CASE {v} WHEN 'tie' THEN 'tie' WHEN 'left' THEN CASE WHEN a.left_is_a THEN 'a' ELSE 'b' END
                    ELSE CASE WHEN a.left_is_a THEN 'b' ELSE 'a' END END"""
_VOTE = f"""
WITH {{caller}}, {statements.claim(COMPARISON, aid="$3", uid=_UID, now=_NOW, returning=", ra.left_is_a",
                                   guard="AND (SELECT role FROM caller) = ANY($7::text[])")}, v AS (
    INSERT INTO comparison_vote (assignment_id, comparison_id, annotator_id, alignment, fidelity, duration_ms,
                                 created_at)
    SELECT a.id, a.item_id, (SELECT uid FROM caller), {_TO_MODEL.format(v="$4::text")},
           {_TO_MODEL.format(v="$5::text")}, $6, $2
    FROM a
    RETURNING id
)
SELECT c.uid, c.role, c.cred, c.seen, (SELECT id FROM v), (SELECT id FROM item)
FROM (SELECT 1) one LEFT JOIN caller c ON true
"""

NEXT_SQL = _NEXT.format(caller=_TOKEN_CALLER)
# `next` leases work, so a session must prove the call came from our page (credentials.changes_state)
NEXT_SESSION_SQL = _NEXT.format(caller=_SESSION_CALLER.format(csrf=_CSRF.format(n=7)))
_SESSION_CSRF = _SESSION_CALLER.format(csrf=_CSRF.format(n=8))
SUBMIT_SQL = {(session, skip): _SUBMIT.format(caller=_SESSION_CSRF if session else _TOKEN_CALLER, claim=_CLAIM[skip])
              for session in (False, True) for skip in (False, True)}
NEXT_PAIR_SQL = {session: _NEXT_PAIR.format(caller=_SESSION_CALLER.format(csrf=_CSRF.format(n=10)) if session
                                             else _TOKEN_CALLER)
                 for session in (False, True)}
VOTE_SQL = {session: _VOTE.format(caller=_SESSION_CSRF if session else _TOKEN_CALLER) for session in (False, True)}

# Plans that do not depend on the values: no planning per call, the same plan at any table size.
# A generic plan is made once per connection from the statistics of that moment; on a young,
# small table a sequential scan looks cheapest (the "seen it" probe would then read the whole
# rating_assignment table for every candidate image once it has grown). Every access here has
# an index, so sequential scans are ruled out for these connections.
SERVER_SETTINGS = {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off", "jit": "off",
                   "application_name": "t2if-hotpath"}


def usable(settings: Settings, dialect_name: str) -> bool:
    """Whether this path runs (T2IF_ANNOTATION_ENGINE=auto on Postgres)."""
    return settings.annotation_engine == "auto" and dialect_name == "postgresql"


def rating_task(aid: int, image_id: int, expires: datetime, text: str, category: str, ps_id: int) -> RatingTask:
    """A task from one lease row; the values come typed from the database."""
    return RatingTask.model_construct(assignment_id=aid, image_id=image_id, image_url=image_url(image_id),
                                      prompt=text, prompt_set_id=ps_id, category=category,
                                      lease_expires_at=expires, highlights=list(highlights(text)))


class Fallback(Exception):
    """This request is the route's to answer (see the module docstring)."""

    def __init__(self, reason: str, state: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.state = state or {}


def _credentials(scope: Scope, settings: Settings) -> tuple[str, str | None]:
    """(sha256 of the bearer token or session secret, CSRF token sent or None for a bearer token),
    read by auth's definition (auth.credentials), or Fallback where the route must answer (no
    credentials, a malformed Authorization header)."""
    conn = HTTPConnection(scope)
    try:
        found = presented(conn.headers, conn.cookies, settings)
    except NotAuthenticated:
        raise Fallback("not a bearer token") from None
    if found is None:
        raise Fallback("no credentials")
    return sha256_hex(found.secret), None if found.via == "token" else conn.headers.get("x-csrf-token") or ""


def _int_param(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "²", "٣": the route's 422
        raise Fallback("query to validate")
    return int(raw)


def _next_params(query_string: bytes, scope_key: str = "prompt_set_id") -> tuple[int | None, int]:
    """(prompt_set_id or evaluation_id, prefetch) of a `next` query."""
    scope_id: int | None = None
    prefetch = 1
    if query_string:
        for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            if key == scope_key:
                scope_id = _int_param(value)
            elif key == "prefetch":
                prefetch = _int_param(value)
                if not 1 <= prefetch <= MAX_PREFETCH:
                    raise Fallback("query to validate")
    return scope_id, prefetch


# what a connection that can no longer be trusted raises ("cannot switch to state …; another
# operation is in progress" is an InternalClientError)
BROKEN_CONNECTION = (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError,
                     asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError, OSError)


async def _keep_session(conn: Any) -> None:
    """Pool release without asyncpg's reset query (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL:
    one more round trip and parse per call). The two statements leave no session state behind; an
    open transaction is still rolled back by the pool before this is called."""


class HotPath:
    """The asyncpg pool and the two statements, for one API process (created in the app's lifespan)."""

    def __init__(self, dsn: str, settings: Settings, session_factory: sessionmaker[Session],
                 metrics: Registry, rng: random.Random | None = None) -> None:
        self.dsn, self.settings, self.session_factory = dsn, settings, session_factory
        self.pool: Any = None
        # each `next` call's draws (leases.Draws: gold per slot, a pair's sides), from the app's
        # generator that the route draws from too (app.state.annotation_rng): a test seeds it
        self.rng = rng if rng is not None else random.Random()
        # what this process answered itself and what it handed to the route, by reason
        self.requests = annotation_requests(metrics)

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(self.dsn, min_size=0, max_size=self.settings.hotpath_pool_size,
                                              server_settings=SERVER_SETTINGS, command_timeout=60,
                                              reset=_keep_session)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        try:
            async with self.pool.acquire() as conn:
                try:
                    return await conn.fetch(sql, *args)  # type: ignore[no-any-return]
                except BROKEN_CONNECTION:
                    # lost mid-statement (server restart, terminated backend, cancelled call): a
                    # connection in an unknown state is closed, never handed to the next call
                    conn.terminate()
                    raise
        except (asyncpg.PostgresError, *BROKEN_CONNECTION) as exc:
            log.warning("hot path statement failed, the route answers instead: %s", exc)
            raise Fallback("database error") from exc

    def _sweep(self, kind: leases.LeaseKind) -> None:
        """Expired leases back to the pool: the portable sweep, in its own transaction."""
        with transaction(self.session_factory) as session:
            leases.sweep_expired(session, kind, utcnow(), min_interval=self.settings.lease_sweep_seconds)

    async def _sweep_due(self, kind: leases.LeaseKind) -> None:
        if leases.sweep_due(kind, self.settings.lease_sweep_seconds):
            try:
                await run_in_threadpool(self._sweep, kind)
            except Exception as exc:  # housekeeping: the next due sweep tries again
                log.warning("lease sweep failed: %s", exc)

    async def _touch(self, session: bool, cred: str, seen: datetime | None, now: datetime) -> None:
        """last_used_at / last_seen_at, at most once a minute per token or session, as auth.service does."""
        if seen is not None and now - seen <= TOUCH_INTERVAL:
            return
        try:
            async with self.pool.acquire() as conn:
                if session:
                    await conn.execute(TOUCH_SESSION_SQL, cred, now, now - TOUCH_INTERVAL)
                else:
                    await conn.execute(TOUCH_TOKEN_SQL, int(cred), now, now - TOUCH_INTERVAL)
        except Exception as exc:  # bookkeeping only: never fail the annotator's call over it
            log.warning("could not record when a credential was last used: %s", exc)

    async def _admit(self, csrf: str | None, uid: Any, role: Any, cred: Any, seen: datetime | None,
                     now: datetime) -> None:
        """The caller as the statement found it: an annotating role goes on (its credential touched);
        anyone else is Fallback, and the route answers 401 / 403 (csrf_failed, role) with its messages."""
        if uid is None or role not in ANNOTATING_ROLES:
            raise Fallback("caller to check")
        await self._touch(csrf is not None, cred, seen, now)

    async def _lease(self, sql: str, draws: leases.Draws, *args: Any) -> list[Any]:
        """A `next` statement. On a database error nothing was leased, and the route serves the call
        with the same draws."""
        try:
            return await self._fetch(sql, *args)
        except Fallback as fb:
            fb.state["lease_draws"] = draws
            raise

    async def next(self, scope: Scope) -> bytes | None:
        """The JSON body of a `next` answer, None for 204, or Fallback."""
        key, csrf = _credentials(scope, self.settings)
        prompt_set_id, prefetch = _next_params(scope["query_string"])
        await self._sweep_due(RATING)
        now = datetime.now(UTC)
        draws = leases.draw(RATING, prefetch, self.rng)
        args = [key, now, prompt_set_id, prefetch, ANNOTATING_ROLES, draws.gold, *([csrf] if csrf is not None else [])]
        rows = await self._lease(NEXT_SQL if csrf is None else NEXT_SESSION_SQL, draws, *args)
        head = rows[0]
        await self._admit(csrf, head["id"], head["text"], head["category"], head["expires"], now)
        if sum(1 for r in rows if r["kind"] == 2) < head["image_id"]:
            # another call of this caller leased one of the chosen images meanwhile: the route
            # answers with what the caller now holds (this statement's leases are committed, and
            # with them this call's gold)
            raise Fallback("raced with the caller's own call", {"lease_draws": draws.gold_served()})
        tasks = [rating_task(r["id"], r["image_id"], r["expires"], r["text"], r["category"], r["prompt_set_id"])
                 for r in rows[1:]]
        if len(tasks) < prefetch and head["want"] > 0 and head["prompt_set_id"] is not None and head["n_sets"] > 1:
            # the first set (its gold included) ran dry for this caller: other sets may still serve
            raise Fallback("first set ran dry", {"lease_draws": draws.gold_served()})
        if not tasks:
            return None
        first, rest = tasks[0], tasks[1:]
        batch = RatingTaskBatch.model_construct(**dict(first), prefetched=rest)
        return batch.__pydantic_serializer__.to_json(batch)  # type: ignore[no-any-return]

    async def submit(self, scope: Scope, raw: bytes) -> bytes:
        """The JSON body of a 201 answer, or Fallback."""
        key, csrf = _credentials(scope, self.settings)
        try:
            body = RatingSubmit.model_validate_json(raw)
        except ValidationError:
            raise Fallback("body to validate") from None
        reason = body.skip_reason.strip() if body.label == "skip" and body.skip_reason else None
        now = datetime.now(UTC)
        args = [key, now, body.assignment_id, body.label, reason, body.duration_ms, ANNOTATING_ROLES]
        if csrf is not None:
            args.append(csrf)
        rows = await self._fetch(SUBMIT_SQL[csrf is not None, body.label == "skip"], *args)
        uid, role, cred, seen, rating_id, image_id = rows[0]
        await self._admit(csrf, uid, role, cred, seen, now)
        if rating_id is None:
            raise Fallback("not the caller's live lease")  # repeat, lost, foreign, unknown: the route decides
        out = RatingRead.model_construct(id=rating_id, assignment_id=body.assignment_id, image_id=image_id,
                                         label=body.label, skip_reason=reason, duration_ms=body.duration_ms,
                                         created_at=now)
        return out.__pydantic_serializer__.to_json(out)  # type: ignore[no-any-return]


    async def next_pair(self, scope: Scope) -> bytes | None:
        """`next` for comparisons: the JSON body, None for 204, or Fallback (as `next`)."""
        key, csrf = _credentials(scope, self.settings)
        evaluation_id, prefetch = _next_params(scope["query_string"], "evaluation_id")
        await self._sweep_due(COMPARISON)
        now = datetime.now(UTC)
        draws = leases.draw(COMPARISON, prefetch, self.rng)
        args = [key, now, evaluation_id, prefetch, ANNOTATING_ROLES, self.settings.comparison_gold_rate,
                self.settings.lease_seconds, draws.gold, draws.left, *([csrf] if csrf is not None else [])]
        rows = await self._lease(NEXT_PAIR_SQL[csrf is not None], draws, *args)
        head = rows[0]
        await self._admit(csrf, head["id"], head["text"], head["cred"], head["expires"], now)
        if sum(1 for r in rows if r["kind"] == 2) < head["picked"]:
            raise Fallback("raced with the caller's own call", {"lease_draws": draws.gold_served()})
        tasks = [pair_task(r["id"], r["text"], r["left_is_a"], r["n_a"], r["n_b"], r["expires"]) for r in rows[1:]]
        if not tasks:
            return None
        batch = ComparisonTaskBatch.model_construct(**dict(tasks[0]), prefetched=tasks[1:])
        return batch.__pydantic_serializer__.to_json(batch)  # type: ignore[no-any-return]

    async def vote(self, scope: Scope, raw: bytes) -> bytes:
        """The JSON body of a 201 answer to a vote, or Fallback."""
        key, csrf = _credentials(scope, self.settings)
        try:
            body = VoteSubmit.model_validate_json(raw)
        except ValidationError:
            raise Fallback("body to validate") from None
        now = datetime.now(UTC)
        args = [key, now, body.assignment_id, body.alignment, body.fidelity, body.duration_ms, ANNOTATING_ROLES]
        rows = await self._fetch(VOTE_SQL[csrf is not None], *args, *([csrf] if csrf is not None else []))
        uid, role, cred, seen, vote_id, _ = rows[0]
        await self._admit(csrf, uid, role, cred, seen, now)
        if vote_id is None:
            raise Fallback("not the caller's live lease")
        out = VoteRead.model_construct(assignment_id=body.assignment_id, alignment=body.alignment,
                                       fidelity=body.fidelity, duration_ms=body.duration_ms, created_at=now)
        return out.__pydantic_serializer__.to_json(out)  # type: ignore[no-any-return]


def pair_task(aid: int, prompt: str, left_is_a: bool, n_a: int, n_b: int, expires: datetime) -> ComparisonTask:
    """A comparison task from one lease row: the image URLs name the assignment and side, never the
    image (blind pairs); a side without listed images shows its one image."""
    n = {"left": max(n_a if left_is_a else n_b, 1), "right": max(n_b if left_is_a else n_a, 1)}
    side = {screen: PairImage.model_construct(
        image_url=pair_image_url(aid, screen), image_urls=[pair_image_url(aid, screen, i) for i in range(k)])
        for screen, k in n.items()}
    return ComparisonTask.model_construct(assignment_id=aid, prompt=prompt, left=side["left"], right=side["right"],
                                          lease_expires_at=expires)

async def _read_body(receive: Receive) -> tuple[bytes, bool] | None:
    """(what was read, whether that is the whole body): reading stops once it passes MAX_BODY.
    None: the client went away before the body was complete (nothing is stored, nothing sent)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > MAX_BODY:
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive, more: bool = False) -> Receive:
    """A receive that hands the route the body already read, then whatever follows."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replayed


async def _send_json(send: Send, status: int, body: bytes | None) -> None:
    if body is None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class HotPathMiddleware:
    """Answers the common case of the two hot calls itself; everything else goes on to FastAPI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hot: HotPath | None = getattr(scope["app"].state, "hotpath", None)
        path, method = scope["path"], scope["method"]
        if hot is None or hot.pool is None or path not in HOT_PATHS or hot.settings.annotation_engine != "auto":
            await self.app(scope, receive, send)
            return
        handler: Callable[[], Awaitable[bytes | None]]
        if path == NEXT_PATH and method == "GET":
            status, handler = 200, lambda: hot.next(scope)
        elif path == NEXT_PAIR_PATH and method == "GET":
            status, handler = 200, lambda: hot.next_pair(scope)
        elif path in (SUBMIT_PATH, VOTE_PATH) and method == "POST":
            read = await _read_body(receive)
            if read is None:
                return
            raw, whole = read
            if not whole:  # too big for a rating: the route reads the rest and refuses it
                await self.app(scope, _replay(raw, receive, more=True), send)
                return
            receive = _replay(raw, receive)
            status, handler = 201, (lambda: hot.submit(scope, raw)) if path == SUBMIT_PATH else (
                lambda: hot.vote(scope, raw))
        else:
            await self.app(scope, receive, send)
            return
        try:
            body = await handler()
        except Fallback as fb:
            hot.requests.inc(path=path, answered_by="route", reason=str(fb))
            if fb.state:
                scope.setdefault("state", {}).update(fb.state)
            await self.app(scope, receive, send)
            return
        hot.requests.inc(path=path, answered_by="hot_path", reason="")
        await _send_json(send, status, body)


def asyncpg_dsn(sqlalchemy_url: Any) -> str:
    """postgresql+psycopg://... -> postgresql://... for asyncpg (same host, user, password, database)."""
    return str(sqlalchemy_url.set(drivername="postgresql").render_as_string(hide_password=False))

