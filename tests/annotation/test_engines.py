"""The lease rules on every engine (sqlite-portable, pg-portable, pg-fast), and a differential test
that plays one random sequence of calls on each engine and requires the same outcomes."""

from __future__ import annotations

import random
from typing import Any

from app.annotation import hotpath
from tests.annotation.conftest import ENGINES, Rig, handed_to_route, hot_answered, make_pool, open_rig
from tests.conftest import bearer


def _pairs(rig: Rig, researcher, n_pairs: int, votes: int, gold_rate: float = 0.0) -> tuple[list[int], list[int]]:
    """(image ids, comparison ids): n_pairs pairs of one prompt, `votes` votes wanted each; images
    and pairs with gold mixed in at `gold_rate`."""
    pool = make_pool(rig.client, researcher, n_images=2 * n_pairs, k=2, prompts=["Two dogs"], gold_rate=gold_rate)
    rig.app.state.settings.comparison_gold_rate = gold_rate
    ids = []
    for i in range(n_pairs):
        r = rig.client.post("/api/v1/comparisons", headers=bearer(researcher),
                            json={"image_a_id": pool.image_ids[2 * i], "image_b_id": pool.image_ids[2 * i + 1],
                                  "votes_wanted": votes})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return pool.image_ids, ids


def test_comparison_rules_on_every_engine(rig):
    c = rig.client
    _images, (p1, p2) = _pairs(rig, rig.make_user("researcher"), 2, votes=2)
    a, b, d = rig.make_user(), rig.make_user(), rig.make_user()

    def nxt(u, **params):
        return c.get("/api/v1/comparison-tasks/next", headers=bearer(u), params=params)

    def vote(u, aid, al="left", fi="tie", **extra):
        return c.post("/api/v1/comparison-votes", headers=bearer(u),
                      json={"assignment_id": aid, "alignment": al, "fidelity": fi, **extra})

    assert nxt(a, prefetch=9).status_code == 422
    assert c.post("/api/v1/comparison-votes", headers={"Authorization": "Bearer t2if_nope"},
                  json={}).status_code == 401
    batch = nxt(a, prefetch=2).json()
    assert batch["prompt"] == "Two dogs" and len(batch["prefetched"]) == 1
    assert batch["left"]["image_url"].endswith(f"/{batch['assignment_id']}/images/left")
    assert batch["left"]["image_urls"] == [batch["left"]["image_url"]]
    first, second = batch["assignment_id"], batch["prefetched"][0]["assignment_id"]
    assert nxt(a).json()["assignment_id"] == first  # no hoarding: held leases come back first
    left_is_a = {aid: rig.sql("SELECT left_is_a FROM comparison_assignment WHERE id = :i", i=aid)
                 for aid in (first, second)}

    created = vote(a, first, "left", "right", duration_ms=900)
    assert created.status_code == 201, created.text
    assert created.json()["alignment"] == "left" and created.json()["duration_ms"] == 900
    stored = rig.sql("SELECT alignment || fidelity FROM comparison_vote WHERE assignment_id = :i", i=first)
    assert stored == ("ab" if left_is_a[first] else "ba")  # model terms, through the recorded side
    again = vote(a, first, "left", "right", duration_ms=900)
    assert again.status_code == 200 and again.json() == created.json()
    assert vote(a, first, "tie", "tie").json()["error"]["code"] == "already_answered"
    assert vote(b, second).status_code == 404 and vote(a, 987654).status_code == 404
    assert vote(a, 0).status_code == 422

    # undo gives the lease back with its sides; the vote is taken again
    undone = c.post(f"/api/v1/comparison-votes/{first}/undo", headers=bearer(a))
    assert undone.status_code == 200 and undone.json()["assignment_id"] == first
    assert vote(a, first, "right", "left").status_code == 201

    # b and d: one slot left on each pair; a's lease on p2 runs out and d takes it
    got_b = nxt(b, prefetch=2).json()
    assert vote(b, got_b["assignment_id"]).status_code == 201
    assert vote(b, got_b["prefetched"][0]["assignment_id"]).status_code == 201
    rig.expire("comparison_assignment")
    got_d = nxt(d)
    assert got_d.status_code == 200
    late = vote(a, second)
    assert late.status_code == 409 and late.json()["error"]["code"] == "lease_lost"
    assert vote(d, got_d.json()["assignment_id"]).status_code == 201
    assert nxt(a).status_code == 204 and nxt(d).status_code == 204

    for p in (p1, p2):
        assert rig.sql("SELECT count(DISTINCT annotator_id) FROM comparison_vote WHERE comparison_id = :p", p=p) == 2
        assert rig.sql("SELECT count(*) FROM comparison_vote WHERE comparison_id = :p", p=p) == 2
    assert rig.sql("SELECT sum(votes_open) FROM comparison") == 0
    if rig.name == "pg-fast":
        assert hot_answered(rig.app, hotpath.NEXT_PAIR_PATH) >= 3 and hot_answered(rig.app, hotpath.VOTE_PATH) >= 4


# ---- differential ------------------------------------------------------------------------------

N_USERS, N_PAIRS, STEPS, GOLD_RATE = 4, 4, 120, 0.4


def _play(rig: Rig, seed: int) -> tuple[list[Any], dict[str, Any]]:
    """Play the seed's sequence; returns (outcome of each step, final state), in terms that do not
    depend on the engine (item positions, not ids; status and error codes). The engines' own
    draws (gold slots, a pair's sides) come from the app's generator, seeded the same on each."""
    rng = random.Random(seed)
    rig.app.state.annotation_rng.seed(seed)
    researcher = rig.make_user("researcher")
    images, pairs = _pairs(rig, researcher, N_PAIRS, votes=2, gold_rate=GOLD_RATE)
    for image_id in images[:3]:  # gold from the start; the sequence marks and unmarks more
        assert rig.client.patch(f"/api/v1/images/{image_id}", headers=bearer(researcher),
                                json={"gold_label": "good"}).status_code == 200
    for pair_id in pairs[:2]:
        assert rig.client.patch(f"/api/v1/comparisons/{pair_id}", headers=bearer(researcher),
                                json={"gold_fidelity": "b"}).status_code == 200
    for image_id in images:  # a reward model's labelling order, ties included (Image.certainty)
        rig.sql("UPDATE image SET certainty = :c WHERE id = :i", c=rng.choice([0, 250, 250, 900]), i=image_id)
    users = [rig.make_user() for _ in range(N_USERS)]
    seen: dict[tuple[int, str], list[int]] = {(u, k): [] for u in range(N_USERS) for k in ("r", "c")}
    out: list[Any] = []

    def item_of(kind: str, aid: int) -> int:
        if kind == "r":
            return images.index(rig.sql("SELECT image_id FROM rating_assignment WHERE id = :i", i=aid))
        return pairs.index(rig.sql("SELECT comparison_id FROM comparison_assignment WHERE id = :i", i=aid))

    def lease_of(kind: str, aid: int) -> Any:
        """(is gold, left is a) of a lease: which leases were gold, and the sides recorded."""
        if kind == "r":
            return rig.rows(f"SELECT is_gold, NULL FROM rating_assignment WHERE id = {aid}")[0]
        return rig.rows(f"SELECT is_gold, left_is_a FROM comparison_assignment WHERE id = {aid}")[0]

    def code(r: Any) -> Any:
        return (r.status_code, r.json()["error"]["code"]) if r.status_code >= 400 else r.status_code

    for _ in range(STEPS):
        op = rng.choice(["next", "next", "next", "submit", "submit", "submit", "undo", "expire", "gold"])
        u = rng.randrange(N_USERS)
        kind = rng.choice(["r", "c"])
        h = bearer(users[u])
        known = seen[u, kind]
        if op == "next":
            n = rng.choice([1, 1, 2, 3])
            r = rig.client.get("/api/v1/rating-tasks/next" if kind == "r" else "/api/v1/comparison-tasks/next",
                               headers=h, params={"prefetch": n})
            got = [] if r.status_code == 204 else [r.json()["assignment_id"]] + [
                t["assignment_id"] for t in r.json()["prefetched"]]
            known += [aid for aid in got if aid not in known]
            out.append((op, kind, u, r.status_code, [known.index(aid) for aid in got],
                        [item_of(kind, aid) for aid in got], [lease_of(kind, aid) for aid in got]))
        elif op in ("submit", "undo") and known:
            i = rng.randrange(len(known))
            if op == "undo":
                path = f"/api/v1/{'ratings' if kind == 'r' else 'comparison-votes'}/{known[i]}/undo"
                out.append((op, kind, u, i, code(rig.client.post(path, headers=h))))
            elif kind == "r":
                label = rng.choice(["good", "bad", "skip"])
                r = rig.client.post("/api/v1/ratings", headers=h, json={"assignment_id": known[i], "label": label})
                out.append((op, kind, u, i, label, code(r)))
            else:
                al, fi = rng.choice(["left", "right", "tie"]), rng.choice(["left", "right", "tie"])
                r = rig.client.post("/api/v1/comparison-votes", headers=h,
                                    json={"assignment_id": known[i], "alignment": al, "fidelity": fi})
                out.append((op, kind, u, i, al, fi, code(r)))
        elif op == "expire":
            rig.expire("rating_assignment" if kind == "r" else "comparison_assignment")
            out.append((op, kind))
        elif op == "gold":
            on = rng.random() < 0.5
            if kind == "r":
                j = rng.randrange(len(images))
                r = rig.client.patch(f"/api/v1/images/{images[j]}", headers=bearer(researcher),
                                     json={"gold_label": "good" if on else None})
            else:
                j = rng.randrange(len(pairs))
                r = rig.client.patch(f"/api/v1/comparisons/{pairs[j]}", headers=bearer(researcher),
                                     json={"gold_alignment": "a" if on else None})
            out.append((op, kind, j, on, r.status_code))
    state = {
        "ratings": [(images.index(i), lab) for i, lab in rig.rows("SELECT image_id, label FROM rating ORDER BY id")],
        "open": rig.rows("SELECT ratings_open FROM image ORDER BY id"),
        "votes": rig.rows("SELECT comparison_id, count(*) FROM comparison_vote GROUP BY comparison_id ORDER BY 1"),
        "votes_open": rig.rows("SELECT votes_open FROM comparison ORDER BY id"),
        "leased": rig.rows("SELECT state, count(*) FROM rating_assignment GROUP BY state ORDER BY 1"),
        "pairs_leased": rig.rows("SELECT state, count(*) FROM comparison_assignment GROUP BY state ORDER BY 1"),
        "gold_leases": rig.rows("SELECT count(*) FROM rating_assignment WHERE is_gold UNION ALL "
                                "SELECT count(*) FROM comparison_assignment WHERE is_gold"),
        "sides": rig.rows("SELECT left_is_a FROM comparison_assignment ORDER BY id"),
    }
    return out, state


def test_least_certain_images_come_first_among_equally_full_ones(rig):
    """The labelling order a reward model set (train_reward's label_order 'uncertain'): fullest
    first still, then the lowest Image.certainty, then the oldest."""
    pool = make_pool(rig.client, rig.make_user("researcher"), n_images=5, k=2)
    im = pool.image_ids
    for image_id, certainty in zip(im, [900, 100, 500, 0, 500], strict=True):
        rig.sql("UPDATE image SET certainty = :c WHERE id = :i", c=certainty, i=image_id)
    a, b = rig.make_user(), rig.make_user()

    def order(u, n):
        r = rig.client.get("/api/v1/rating-tasks/next", headers=bearer(u), params={"prefetch": n})
        assert r.status_code == 200, r.text
        return [t["image_id"] for t in [r.json(), *r.json()["prefetched"]]], r.json()["assignment_id"]

    got, first = order(a, 1)
    assert got == [im[3]]  # 0: no model ranked it, which counts as least certain
    assert rig.client.post("/api/v1/ratings", headers=bearer(a),
                           json={"assignment_id": first, "label": "good"}).status_code == 201
    got, _ = order(b, 5)
    # im[3] is fullest (one label of two): it beats every certainty; then 100, 500 by id, 900
    assert got == [im[3], im[1], im[2], im[4], im[0]]
    got, _ = order(a, 4)
    assert got == [im[1], im[2], im[4], im[0]]


def test_one_random_sequence_gives_the_same_outcomes_on_every_engine(tmp_path, settings, session_factory, db):
    """next / submit / skip / undo / expire / gold marks, drawn from a seed, with gold served at
    GOLD_RATE, on each engine in turn: the same tasks (gold or not, sides), answers and counts.
    On pg-fast the hot statement serves every `next` itself, gold included."""
    for seed in (1, 2):
        results = {}
        for name in ENGINES:
            with open_rig(name, tmp_path, settings, session_factory) as rig:
                results[name] = _play(rig, seed)
                if name == "pg-fast":
                    assert handed_to_route(rig.app, "raced with the caller's own call") == 0
                    assert handed_to_route(rig.app) == handed_to_route(rig.app, "not the caller's live lease")
                    assert hot_answered(rig.app, hotpath.NEXT_PATH) and hot_answered(rig.app, hotpath.NEXT_PAIR_PATH)
        base_steps, base_state = results[ENGINES[0]]
        assert base_state["gold_leases"][0][0] > 0 and base_state["gold_leases"][1][0] > 0  # gold was served
        for name in ENGINES[1:]:
            steps, state = results[name]
            diverged = next((i for i, (x, y) in enumerate(zip(base_steps, steps, strict=True)) if x != y), None)
            assert diverged is None, (seed, name, diverged, base_steps[max(0, diverged - 3):diverged + 1],
                                      steps[max(0, diverged - 3):diverged + 1])
            assert state == base_state, (seed, name)
