"""The annotation hot path (next + submit) on each of its implementations.

On Postgres the hot path (app/annotation/hotpath.py) answers the common case of
`GET /rating-tasks/next` and `POST /ratings` and hands the rest to the route, which runs the
portable engine (ratings.py); "fast" runs the route alone (the hot path's pool not started), and
"portable" sets T2IF_ANNOTATION_ENGINE=portable. The same flow must give the same answers on all three. Which
implementation answered is read from the app's metrics (app/metrics.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from app.annotation import hotpath
from app.db.models import Image, Rating, RatingAssignment
from tests.annotation.conftest import handed_to_route, hot_answered, make_pool, use_engine
from tests.conftest import TEST_SECRET, Account, bearer


def _next(client, acct, **params):
    return client.get("/api/v1/rating-tasks/next", headers=bearer(acct), params=params)


def _rate(client, acct, assignment_id, label="good", **extra):
    return client.post("/api/v1/ratings", headers=bearer(acct),
                       json={"assignment_id": assignment_id, "label": label, **extra})


def rating_flow(client, make_user: Callable[[str], Account], count: Callable[[str], int],
                expire: Callable[[], None]) -> None:
    researcher = make_user("researcher")
    pool = make_pool(client, researcher, n_images=3, k=1)
    a, b, c = make_user("annotator"), make_user("annotator"), make_user("annotator")

    # callers first: anonymous / bad token -> 401 even with a broken body; then 422 for the body
    assert client.post("/api/v1/ratings", content=b"{").status_code == 401
    bad = client.post("/api/v1/ratings", headers={"Authorization": "Bearer t2if_nope"}, content=b"{")
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "not_authenticated"
    assert client.get("/api/v1/rating-tasks/next", headers={"Authorization": "Basic x"}).status_code == 401
    unknown = client.get("/api/v1/rating-tasks/next", headers={"Authorization": "Bearer t2if_nope"})
    assert unknown.status_code == 401 and "invalid, expired or revoked" in unknown.json()["error"]["message"]
    invalid = client.post("/api/v1/ratings", headers=bearer(a), json={"assignment_id": 1, "label": "meh"})
    assert invalid.status_code == 422 and "label" in invalid.json()["error"]["message"]
    assert client.post("/api/v1/ratings", headers=bearer(a)).status_code == 422
    assert _next(client, a, prefetch=9).status_code == 422

    # lease, no hoarding, prefetch, fullest first
    first = _next(client, a)
    assert first.status_code == 200
    t = first.json()
    assert t["image_url"] == f"/api/v1/images/{t['image_id']}/file" and t["prompt"] and t["lease_expires_at"]
    assert t["prefetched"] == [] and t["prompt_set_id"] == pool.prompt_set_id
    assert _next(client, a).json()["assignment_id"] == t["assignment_id"]
    batch = _next(client, a, prefetch=3).json()
    ids = [batch["assignment_id"]] + [p["assignment_id"] for p in batch["prefetched"]]
    assert ids[0] == t["assignment_id"] and len(set(ids)) == 3

    # answer, identical repeat, conflicting repeat, foreign and unknown assignments
    created = _rate(client, a, ids[0], "good", duration_ms=700)
    assert created.status_code == 201
    body = created.json()
    assert body["assignment_id"] == ids[0] and body["label"] == "good" and body["duration_ms"] == 700
    again = _rate(client, a, ids[0], "good", duration_ms=700)
    assert again.status_code == 200 and again.json() == body
    assert _rate(client, a, ids[0], "bad").json()["error"]["code"] == "already_answered"
    assert _rate(client, b, ids[1]).status_code == 404
    assert _rate(client, a, 987654).status_code == 404

    # a skip gives the slot back to someone else; a never sees that image again
    skipped = _rate(client, a, ids[1], "skip", skip_reason="  blurry ")
    assert skipped.status_code == 201 and skipped.json()["skip_reason"] == "blurry"
    got_b = _next(client, b).json()
    assert got_b["image_id"] == batch["prefetched"][0]["image_id"]
    assert _rate(client, b, got_b["assignment_id"], "bad").status_code == 201

    # an expired lease that was handed on is refused; the new holder's answer stands
    expire()
    got_c = _next(client, c)
    assert got_c.status_code == 200 and got_c.json()["image_id"] == batch["prefetched"][1]["image_id"]
    late = _rate(client, a, ids[2])
    assert late.status_code == 409 and late.json()["error"]["code"] == "lease_lost"
    assert _rate(client, c, got_c.json()["assignment_id"]).status_code == 201

    assert _next(client, a).status_code == 204 and _next(client, c).status_code == 204
    assert count("SELECT count(*) FROM rating WHERE label <> 'skip'") == 3
    assert count("SELECT count(*) FROM rating") == 4
    assert count("SELECT sum(ratings_open) FROM image") == 0
    assert count("SELECT count(*) FROM rating_assignment WHERE state = 'leased'") == 0


@pytest.fixture(params=["hot", "fast", "portable"])
def engine_path(request, settings, monkeypatch) -> str:
    use_engine(request.param, settings, monkeypatch)
    return str(request.param)


def test_rating_flow_on_postgres(engine_path, client, app, make_user, db):
    app.state.settings.lease_sweep_seconds = 0

    def count(sql: str) -> int:
        db.rollback()
        return int(db.execute(text(sql)).scalar() or 0)

    def expire() -> None:
        db.execute(text("UPDATE rating_assignment SET lease_expires_at = now() - interval '1 second' "
                        "WHERE state = 'leased'"))
        db.commit()

    rating_flow(client, make_user, count, expire)
    if engine_path == "hot":
        # the common cases were answered by the hot path, the rest by the route (same answers)
        assert hot_answered(app, hotpath.NEXT_PATH) >= 6 and hot_answered(app, hotpath.SUBMIT_PATH) >= 4
        assert handed_to_route(app, "caller to check") >= 1 and handed_to_route(app, "body to validate") >= 2
        assert handed_to_route(app, "not the caller's live lease") >= 4
        assert handed_to_route(app, "query to validate") == 1
    else:
        assert hot_answered(app) == 0 and handed_to_route(app) == 0
    assert (app.state.hotpath is None) == (engine_path == "portable")
    assert db.scalar(select(func.count()).select_from(Rating)) == 4
    assert db.scalar(select(func.min(Image.ratings_open))) == 0


@pytest.fixture
def sqlite_app(tmp_path) -> Iterator[tuple[TestClient, object]]:
    from app.config import Settings
    from app.db import migrate
    from app.db.session import make_engine, make_sessionmaker
    from app.jobs.dispatch import RecordingDispatcher
    from app.main import create_app

    url = f"sqlite:///{tmp_path / 'hot.sqlite3'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    settings = Settings(env="test", database_url=url, storage_url=str(tmp_path / "storage"),
                        model_cache_dir=str(tmp_path / "models"), secret_key=TEST_SECRET, log_level="WARNING",
                        lease_sweep_seconds=0)
    app = create_app(settings, session_factory=factory, dispatcher=RecordingDispatcher())
    with TestClient(app) as client:
        yield client, factory
    engine.dispose()


def test_rating_flow_on_sqlite(sqlite_app):
    from app.auth import service as auth
    from app.auth.schemas import TokenCreate, UserCreate
    from app.db.session import transaction

    client, factory = sqlite_app
    n = iter(range(1, 100))

    def make_user(role: str) -> Account:
        name = f"{role}{next(n)}"
        with transaction(factory) as s:
            user = auth.create_user(s, UserCreate(username=name, password="correct-horse-9", role=role))
            token = auth.create_token(s, user, TokenCreate(name="t")).token
            return Account(user.id, name, "correct-horse-9", role, token)

    def count(sql: str) -> int:
        with transaction(factory) as s:
            return int(s.execute(text(sql)).scalar() or 0)

    def expire() -> None:
        with transaction(factory) as s:
            s.execute(text("UPDATE rating_assignment SET lease_expires_at = '2000-01-01 00:00:00' "
                           "WHERE state = 'leased'"))

    rating_flow(client, make_user, count, expire)


def test_browser_session_on_the_hot_path(engine_path, client, app, make_user, db):
    """The annotate page calls next / submit with its session cookie and the CSRF header."""
    from tests.conftest import browser_login

    researcher = make_user("researcher")
    make_pool(client, researcher, n_images=2, k=1)
    a = make_user("annotator")
    csrf = browser_login(client, a.username, a.password)
    task = client.get("/api/v1/rating-tasks/next", headers={"X-CSRF-Token": csrf})
    assert task.status_code == 200
    aid = task.json()["assignment_id"]
    no_csrf = client.post("/api/v1/ratings", json={"assignment_id": aid, "label": "good"})
    assert no_csrf.status_code == 403 and no_csrf.json()["error"]["code"] == "csrf_failed"
    ok = client.post("/api/v1/ratings", json={"assignment_id": aid, "label": "good"},
                     headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201
    assert db.scalar(select(func.count()).select_from(Rating)) == 1
    client.cookies.clear()
    assert client.get("/api/v1/rating-tasks/next").status_code == 401
    assert (hot_answered(app) > 0) == (engine_path == "hot")


def test_browser_session_answered_by_the_hot_path(client, app, make_user, db):
    """The pages' calls (session cookie + X-CSRF-Token) are answered by the hot path too; a missing
    or wrong CSRF token on submit stores nothing and gets the route's 403, a logged-out cookie 401."""
    from tests.conftest import browser_login

    pool = make_pool(client, make_user("researcher"), n_images=2, k=1)
    ann = make_user("annotator")
    csrf = browser_login(client, ann.username, ann.password)

    # `next` leases work: without the page's CSRF token a cross-site link cannot make it hoard items
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        refused = client.get("/api/v1/rating-tasks/next", headers=headers)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    assert db.scalar(select(func.count()).select_from(RatingAssignment)) == 0
    task = client.get("/api/v1/rating-tasks/next", headers={"X-CSRF-Token": csrf})
    assert task.status_code == 200 and task.json()["image_id"] in pool.image_ids
    answer = {"assignment_id": task.json()["assignment_id"], "label": "bad", "duration_ms": 900}
    for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": csrf[:-1]}):
        refused = client.post("/api/v1/ratings", json=answer, headers=headers)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    assert db.scalar(select(func.count()).select_from(Rating)) == 0
    stored = client.post("/api/v1/ratings", json=answer, headers={"X-CSRF-Token": csrf})
    assert stored.status_code == 201 and stored.json()["label"] == "bad"
    assert db.scalar(select(Rating.annotator_id)) == ann.id

    assert hot_answered(app, hotpath.NEXT_PATH) == 1 and hot_answered(app, hotpath.SUBMIT_PATH) == 1
    # two refused nexts and three refused submits: the route gives the 403
    assert handed_to_route(app, "caller to check") == 5
    assert handed_to_route(app, "not the caller's live lease") == 0

    assert client.post("/logout", headers={"X-CSRF-Token": csrf}).status_code in (200, 303)
    assert client.get("/api/v1/rating-tasks/next").status_code == 401


def test_gold_is_served_by_the_hot_statement_at_the_drawn_rate(client, app, make_user, db):
    """The hot statement serves gold itself (statements.serve), no hand-over: one uniform draw per
    slot from the app's seeded generator, a slot is gold when its draw is below the set's rate
    (0.5 here), gold goes in id order and never twice to one annotator, and gold takes no slot."""
    import random

    app.state.annotation_rng.seed(7)
    replica = random.Random(7)
    drawn = [replica.random() < 0.5 for _ in range(40)]  # one draw per call: prefetch 1, nothing held
    researcher = make_user("researcher")
    pool = make_pool(client, researcher, n_images=90, k=1, gold_rate=0.5)
    gold_ids = pool.image_ids[:40]
    for image_id in gold_ids:
        r = client.patch(f"/api/v1/images/{image_id}", headers=bearer(researcher), json={"gold_label": "good"})
        assert r.status_code == 200
    a = make_user("annotator")
    served = []
    for _ in range(40):
        t = _next(client, a)
        assert t.status_code == 200
        served.append(t.json()["image_id"])
        assert _rate(client, a, t.json()["assignment_id"]).status_code == 201
    assert [i in gold_ids for i in served] == drawn
    assert [i for i in served if i in gold_ids] == gold_ids[:sum(drawn)]  # by id, each once
    assert handed_to_route(app) == 0 and hot_answered(app, hotpath.NEXT_PATH) == 40
    opens = dict(db.execute(text("SELECT id, ratings_open FROM image")).all())
    assert all(opens[i] == 1 for i in gold_ids)  # gold holds no slot
    assert db.scalar(text("SELECT count(*) FROM rating_assignment WHERE is_gold")) == sum(drawn)


def test_unseen_gold_fills_what_the_pool_cannot_without_a_hand_over(client, app, make_user, db):
    """Nothing open left for this annotator: unseen gold still measures them, from the hot
    statement (ratings and pairs); once they saw all gold, 204, still without a hand-over."""
    import random

    app.state.settings.comparison_gold_rate = 0.2
    app.state.annotation_rng.seed(0)
    assert min(random.Random(0).random() for _ in range(5)) >= 0.2  # the rating call draws no gold slot
    researcher = make_user("researcher")
    pool = make_pool(client, researcher, n_images=6, k=1, gold_rate=0.2, prompts=["Two dogs"])
    gold = pool.image_ids[:3]
    for image_id in gold:
        assert client.patch(f"/api/v1/images/{image_id}", headers=bearer(researcher),
                            json={"gold_label": "bad"}).status_code == 200
    pairs = []
    for i in range(3):
        r = client.post("/api/v1/comparisons", headers=bearer(researcher),
                        json={"image_a_id": pool.image_ids[2 * i], "image_b_id": pool.image_ids[2 * i + 1],
                              "votes_wanted": 1})
        assert r.status_code == 201, r.text
        pairs.append(r.json()["id"])
    assert client.patch(f"/api/v1/comparisons/{pairs[1]}", headers=bearer(researcher),
                        json={"gold_alignment": "a"}).status_code == 200
    a = make_user("annotator")
    got = _next(client, a, prefetch=5).json()
    images = [got["image_id"]] + [t["image_id"] for t in got["prefetched"]]
    assert images == pool.image_ids[3:] + gold[:2]  # the open images, then unseen gold by id
    pair = client.get("/api/v1/comparison-tasks/next", headers=bearer(a), params={"prefetch": 3}).json()
    pair_ids = [pair["assignment_id"]] + [t["assignment_id"] for t in pair["prefetched"]]
    leased = db.execute(text("SELECT comparison_id, is_gold FROM comparison_assignment ORDER BY id")).all()
    assert len(pair_ids) == 3 and sorted(leased) == [(pairs[0], False), (pairs[1], True), (pairs[2], False)]
    for aid in pair_ids:
        r = client.post("/api/v1/comparison-votes", headers=bearer(a),
                        json={"assignment_id": aid, "alignment": "left", "fidelity": "tie"})
        assert r.status_code == 201
    assert client.get("/api/v1/comparison-tasks/next", headers=bearer(a)).status_code == 204
    assert handed_to_route(app) == 0
    assert hot_answered(app, hotpath.NEXT_PATH) == 1 and hot_answered(app, hotpath.NEXT_PAIR_PATH) == 2


def test_a_set_that_ran_dry_hands_over_to_the_next_set(client, app, make_user):
    researcher = make_user("researcher")
    first = make_pool(client, researcher, n_images=1, k=1, name="first")
    second = make_pool(client, researcher, n_images=2, k=1, name="second")
    a = make_user("annotator")
    t = _next(client, a).json()
    assert t["prompt_set_id"] == first.prompt_set_id
    assert _rate(client, a, t["assignment_id"]).status_code == 201
    t = _next(client, a, prefetch=2).json()
    assert {t["image_id"], t["prefetched"][0]["image_id"]} == set(second.image_ids)
    assert handed_to_route(app, "first set ran dry") == 1


def test_a_connection_lost_mid_statement_hands_over_and_loses_nothing(client, app, make_user, db):
    """The hot submit waits on the image's lock; its connection is killed while it waits. The route
    answers the same call (the submit is idempotent), and the pool reconnects for the next one."""
    import threading
    import time

    pool = make_pool(client, make_user("researcher"), n_images=3, k=1)
    a = make_user("annotator")
    t = _next(client, a).json()
    holder = db.get_bind().connect()
    holder.execute(text("SELECT id FROM image WHERE id = :i FOR UPDATE"), {"i": t["image_id"]})
    killed: list[int] = []

    def kill_the_waiting_statement() -> None:
        with db.get_bind().connect() as c:
            for _ in range(200):
                pids = c.execute(text(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 't2if-hotpath' "
                    "AND datname = current_database() AND wait_event_type = 'Lock'")).scalars().all()
                if pids:
                    killed.extend(c.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pids[0]}).scalars())
                    break
                time.sleep(0.05)
        holder.rollback()  # lets the route's transaction have the image

    killer = threading.Thread(target=kill_the_waiting_statement)
    killer.start()
    try:
        stored = _rate(client, a, t["assignment_id"], "good")
    finally:
        killer.join(15)
        holder.close()
    assert killed == [True]
    assert stored.status_code == 201 and stored.json()["image_id"] in pool.image_ids
    assert handed_to_route(app, "database error") == 1
    again = _rate(client, a, t["assignment_id"], "good")
    assert again.status_code == 200 and again.json() == stored.json()
    assert db.scalar(select(func.count()).select_from(Rating)) == 1
    assert _next(client, a).status_code == 200
    assert hot_answered(app, hotpath.NEXT_PATH) == 2


def test_an_oversized_body_goes_to_the_route(client, app, make_user):
    make_pool(client, make_user("researcher"), n_images=1, k=1)
    a = make_user("annotator")
    t = _next(client, a).json()
    big = client.post("/api/v1/ratings", headers=bearer(a),
                      json={"assignment_id": t["assignment_id"], "label": "skip", "skip_reason": "x" * 40_000})
    assert big.status_code == 422 and "skip_reason" in big.json()["error"]["message"]
    assert _rate(client, a, t["assignment_id"], "skip", skip_reason="too dark").status_code == 201


def test_hot_calls_record_when_a_token_was_last_used_at_most_once_a_minute(client, app, make_user, db):
    make_pool(client, make_user("researcher"), n_images=2, k=1)
    a = make_user("annotator")

    def last_used():
        db.rollback()
        return db.execute(text("SELECT last_used_at FROM api_token WHERE user_id = :u"), {"u": a.id}).scalar()

    assert last_used() is None
    t = _next(client, a).json()
    first = last_used()
    assert first is not None
    recent = db.execute(text("UPDATE api_token SET last_used_at = now() - interval '10 seconds' "
                             "WHERE user_id = :u RETURNING last_used_at"), {"u": a.id}).scalar()
    db.commit()
    assert _rate(client, a, t["assignment_id"]).status_code == 201
    assert last_used() == recent  # touched less than a minute ago: left alone
    db.execute(text("UPDATE api_token SET last_used_at = '2000-01-01' WHERE user_id = :u"), {"u": a.id})
    db.commit()
    assert _next(client, a).status_code == 200
    assert last_used() > recent
    assert hot_answered(app, hotpath.NEXT_PATH) == 2 and hot_answered(app, hotpath.SUBMIT_PATH) == 1


def test_generic_plans_use_indexes_even_when_built_on_a_small_table(client, app, make_user, db):
    """A connection builds its generic plan once, from the statistics of that moment. On a young,
    small, analysed table a sequential scan looks cheapest, and the per-image "seen it" probe
    would then read all of rating_assignment for every candidate as it grows. The hot path's
    connection settings must keep every access on its index whatever the statistics say."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import asyncpg

    make_pool(client, make_user("researcher"), n_images=3, k=2)
    a = make_user("annotator")
    assert _rate(client, a, _next(client, a).json()["assignment_id"]).status_code == 201
    db.commit()
    for table in ("image", "rating_assignment", "rating", "prompt", "prompt_set", "api_token", "user_session",
                  "comparison", "comparison_assignment"):
        db.connection().exec_driver_sql(f"ANALYZE {table}")
    db.commit()

    async def plans() -> dict[str, str]:
        conn = await asyncpg.connect(app.state.hotpath.dsn, server_settings=hotpath.SERVER_SETTINGS)
        try:
            out = {}
            statements = {"next": hotpath.NEXT_SQL, "next (session)": hotpath.NEXT_SESSION_SQL,
                          "next pair": hotpath.NEXT_PAIR_SQL[False],
                          **{f"submit {key}": sql for key, sql in hotpath.SUBMIT_SQL.items()}}
            for name, sql in statements.items():
                stmt = await conn.prepare(sql)
                types = ", ".join([await conn.fetchval("SELECT format_type($1::oid, NULL)", t.oid)
                                   for t in stmt.get_parameters()])
                await conn.execute(f"PREPARE q({types}) AS {sql}")
                nulls = ", ".join("NULL" for _ in stmt.get_parameters())
                plan = await conn.fetch(f"EXPLAIN (COSTS OFF) EXECUTE q({nulls})")
                out[name] = "\n".join(r[0] for r in plan)
                await conn.execute("DEALLOCATE q")
            return out
        finally:
            await conn.close()

    # in a thread of its own: the browser tests' Playwright loop may be running in this one
    with ThreadPoolExecutor(1) as thread:
        found = thread.submit(asyncio.run, plans()).result()
    assert len(found) == 7
    for name, plan in found.items():
        for table in ("image", "rating_assignment", "rating", "api_token", "user_session", "user_account",
                      "comparison", "comparison_assignment"):
            assert f"Seq Scan on {table} " not in plan, f"{name}:\n{plan}"
    for name in ("next", "next (session)"):
        assert "Index Scan using ix_image_pool on image" in found[name]
        assert "Index Scan using uq_rating_assignment_image_id_annotator_id" in found[name]
        # unseen gold: an ordered range scan of the gold images of the set (migration 0001)
        assert "Index Scan using ix_image_gold on image" in found[name], found[name]
    assert "Index Scan using ix_comparison_pool on comparison" in found["next pair"]
    # unseen gold pairs: the partial gold index (migration 0008), not the primary key's every pair
    assert "Index Scan using ix_comparison_gold on comparison" in found["next pair"], found["next pair"]


def test_a_pick_that_loses_a_race_with_the_same_annotator_takes_no_slot(client, app, make_user, db, monkeypatch):
    """Two tabs of one annotator: call 2's statement takes its snapshot, call 1 leases image X and
    commits, then call 2 reaches X. The row lock sees X's new count, the "seen it" check (old
    snapshot) does not see call 1's lease, and the lease upsert makes nothing. Before, the slot was
    taken anyway (X one answer short for good) and call 2 answered 204. Now only leases made take
    slots, and call 2 answers with the lease the annotator holds. A pg_sleep at the start of call
    2's statement opens the window deterministically. (The route's two engines take slots the same
    way, leases.lease_and_take and statements.take; a stress run of 8 threads of one annotator
    left 0 wrong counts there, against 293 and 128 before.)"""
    import threading
    import time

    app.state.settings.lease_sweep_seconds = 3600
    make_pool(client, make_user("researcher"), n_images=3, k=3)
    a = make_user("annotator")
    normal = hotpath.NEXT_SQL
    monkeypatch.setattr(hotpath, "NEXT_SQL",
                        normal.replace("AND u.is_active", "AND u.is_active AND (SELECT true FROM pg_sleep(1))", 1))
    slow: list = []
    second = threading.Thread(target=lambda: slow.append(_next(client, a)))
    second.start()
    for _ in range(100):  # until call 2 sleeps inside its statement
        db.rollback()
        if db.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
                           "AND datname = current_database()")).scalar():
            break
        time.sleep(0.02)
    else:
        pytest.fail("the slow call never started its statement")
    monkeypatch.setattr(hotpath, "NEXT_SQL", normal)
    first = _next(client, a)
    assert first.status_code == 200
    second.join(10)
    assert slow and slow[0].status_code == 200, slow and slow[0].text
    assert slow[0].json()["assignment_id"] == first.json()["assignment_id"]  # the lease it holds
    db.rollback()
    opens = dict(db.execute(text("SELECT id, ratings_open FROM image")).all())
    assert opens[first.json()["image_id"]] == 2 and sorted(opens.values()) == [2, 3, 3]
    assert db.scalar(text("SELECT count(*) FROM rating_assignment")) == 1


def test_odd_inputs_get_the_routes_answers(client, app, make_user, db):
    """Found in review: non-ASCII digits, a body that is not UTF-8, a bearer call with a form
    content type, a NUL in the skip reason, a non-ASCII CSRF token."""
    from tests.conftest import browser_login

    make_pool(client, make_user("researcher"), n_images=2, k=1)
    a = make_user("annotator")
    for digits in ("%C2%B2", "%D9%A3", "%EF%BC%92"):  # superscript two, Arabic-Indic three, fullwidth two
        bad_caller = client.get(f"/api/v1/rating-tasks/next?prefetch={digits}",
                                headers={"Authorization": "Bearer t2if_nope"})
        assert bad_caller.status_code == 401
        assert client.get(f"/api/v1/rating-tasks/next?prefetch={digits}", headers=bearer(a)).status_code == 422
    t = _next(client, a).json()
    latin1 = client.post("/api/v1/ratings", headers={**bearer(a), "Content-Type": "application/json"},
                         content=b'{"assignment_id": 1, "label": "\xe9"}')
    assert latin1.status_code == 422
    nul = _rate(client, a, t["assignment_id"], "skip", skip_reason="bad\x00byte")
    assert nul.status_code == 422 and "NUL" in nul.json()["error"]["message"]
    as_form = client.post("/api/v1/ratings", headers={**bearer(a), "Content-Type": "application/x-www-form-urlencoded"},
                          content=f'{{"assignment_id": {t["assignment_id"]}, "label": "good"}}'.encode())
    assert as_form.status_code == 201
    assert db.scalar(select(func.count()).select_from(Rating)) == 1

    b = make_user("annotator")
    csrf_b = browser_login(client, b.username, b.password)
    tb = client.get("/api/v1/rating-tasks/next", headers={"X-CSRF-Token": csrf_b}).json()
    odd = client.post("/api/v1/ratings", json={"assignment_id": tb["assignment_id"], "label": "good"},
                      headers={"X-CSRF-Token": "\xe9t\xe9".encode("latin-1")})
    assert odd.status_code == 403 and odd.json()["error"]["code"] == "csrf_failed"
    assert db.scalar(select(func.count()).select_from(Rating)) == 1


def test_a_client_gone_before_its_body_was_complete_stores_nothing(client, app, make_user, db):
    make_pool(client, make_user("researcher"), n_images=1, k=1)
    a = make_user("annotator")
    t = _next(client, a).json()
    sent: list[dict] = []
    chunks = [{"type": "http.request", "body": b'{"assignment_id": %d, "label": "good"}' % t["assignment_id"],
               "more_body": True},
              {"type": "http.disconnect"}]

    async def receive():
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/v1/ratings", "raw_path": b"/api/v1/ratings", "root_path": "",
             "query_string": b"", "server": ("testserver", 80), "client": ("testclient", 1),
             "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                         *[(k.lower().encode(), v.encode()) for k, v in bearer(a).items()]]}
    client.portal.call(app, scope, receive, send)
    assert not any(m["type"] == "http.response.start" and m["status"] < 300 for m in sent)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Rating)) == 0


# ---- the caller checks of the hot path are auth's ----------------------------------------------

REFUSALS = {  # what happens to the caller -> (status, error code)
    "revoked token": (401, "not_authenticated"),
    "deactivated user": (401, "not_authenticated"),
    "expired session": (401, "not_authenticated"),
    "missing CSRF token": (403, "csrf_failed"),
}


@pytest.fixture(params=["hot", "fast"])
def hot_or_fast(request, settings, monkeypatch) -> str:
    use_engine(request.param, settings, monkeypatch)
    return str(request.param)


@pytest.mark.parametrize("call", ["next", "submit", "next pair", "vote"])
@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_a_caller_auth_refuses_is_refused_on_each_annotation_call(hot_or_fast, refusal, call, client, app,
                                                                    make_user, db):
    """The hot path checks credentials with auth's definitions (auth.cookies, auth.liveness): a
    revoked token, a deactivated account, an expired session and a session call without its
    CSRF token get the route's 401 / 403 on both calls, and nothing is leased or stored."""
    from tests.conftest import browser_login

    researcher = make_user("researcher")
    pool = make_pool(client, researcher, n_images=3, k=1, prompts=["Two dogs"])
    pairs = call in ("next pair", "vote")
    if pairs:
        assert client.post("/api/v1/comparisons", headers=bearer(researcher), json={
            "image_a_id": pool.image_ids[0], "image_b_id": pool.image_ids[1]}).status_code == 201
    assignment, answer_table = ("comparison_assignment", "comparison_vote") if pairs else ("rating_assignment",
                                                                                           "rating")
    next_path = "/api/v1/comparison-tasks/next" if pairs else "/api/v1/rating-tasks/next"
    a = make_user("annotator")
    with_session = refusal in ("expired session", "missing CSRF token")
    csrf = browser_login(client, a.username, a.password) if with_session else None
    headers = {"X-CSRF-Token": csrf} if with_session else bearer(a)
    held = client.get(next_path, headers=headers)
    assert held.status_code == 200
    aid = held.json()["assignment_id"]
    answer = {"assignment_id": aid, "alignment": "left", "fidelity": "tie"} if pairs else {
        "assignment_id": aid, "label": "good"}

    if refusal == "revoked token":
        db.execute(text("UPDATE api_token SET revoked_at = now() WHERE user_id = :u"), {"u": a.id})
    elif refusal == "deactivated user":
        db.execute(text("UPDATE user_account SET is_active = false WHERE id = :u"), {"u": a.id})
    elif refusal == "expired session":
        db.execute(text("UPDATE user_session SET expires_at = now() - interval '1 second' WHERE user_id = :u"),
                   {"u": a.id})
    else:
        headers = {}
    db.commit()
    before = handed_to_route(app, "caller to check")

    if call in ("next", "next pair"):
        r = client.get(next_path, headers=headers, params={"prefetch": 3})
    else:
        r = client.post("/api/v1/comparison-votes" if pairs else "/api/v1/ratings", headers=headers, json=answer)
    status, code = REFUSALS[refusal]
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    db.rollback()
    assert db.execute(text(f"SELECT count(*), min(state) FROM {assignment}")).one() == (1, "leased")
    assert db.scalar(text(f"SELECT count(*) FROM {answer_table}")) == 0
    # the hot path found no caller its statement may serve and left the answer to the route
    assert handed_to_route(app, "caller to check") == before + (hot_or_fast == "hot")
