"""Blind pairwise comparisons over REST: exactly N votes from N distinct annotators, sides recorded."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select, text

from app.db.models import Comparison, ComparisonAssignment, ComparisonVote
from tests.annotation.conftest import expire_leases, make_pool
from tests.conftest import bearer


def _pair(client, researcher, n_votes=9):
    pool = make_pool(client, researcher, n_images=2, prompts=["Two dogs"])
    r = client.post("/api/v1/comparisons", headers=bearer(researcher),
                    json={"image_a_id": pool.image_ids[0], "image_b_id": pool.image_ids[1], "votes_wanted": n_votes})
    assert r.status_code == 201, r.text
    return pool, r.json()


def test_nine_distinct_voters_then_204(client, researcher, make_user, db):
    pool, comp = _pair(client, researcher)
    bytes_a = client.get(f"/api/v1/images/{pool.image_ids[0]}/file", headers=bearer(researcher)).content
    annotators = [make_user("annotator") for _ in range(10)]
    lefts = Counter()
    for a in annotators[:9]:
        t = client.get("/api/v1/comparison-tasks/next", headers=bearer(a))
        assert t.status_code == 200
        task = t.json()
        assert task["prompt"] == "Two dogs" and "gold" not in t.text
        left_is_a = client.get(task["left"]["image_url"], headers=bearer(a)).content == bytes_a
        lefts[left_is_a] += 1
        # the annotator prefers the left image for alignment, says tie for fidelity
        r = client.post("/api/v1/comparison-votes", headers=bearer(a),
                        json={"assignment_id": task["assignment_id"], "alignment": "left", "fidelity": "tie",
                              "duration_ms": 2000})
        assert r.status_code == 201
        stored = db.scalar(select(ComparisonVote).where(ComparisonVote.assignment_id == task["assignment_id"]))
        assert stored.alignment == ("a" if left_is_a else "b") and stored.fidelity == "tie"
        db.rollback()
        recorded = db.scalar(select(ComparisonAssignment.left_is_a)
                             .where(ComparisonAssignment.id == task["assignment_id"]))
        assert recorded == left_is_a
        db.rollback()
    assert client.get("/api/v1/comparison-tasks/next", headers=bearer(annotators[9])).status_code == 204
    votes = db.execute(select(ComparisonVote.annotator_id)).scalars().all()
    assert len(votes) == 9 and len(set(votes)) == 9
    assert db.scalar(select(Comparison.votes_open)) == 0
    assert set(lefts) <= {True, False}


def test_vote_retry_conflict_and_validation(client, researcher, make_user, db):
    _pool, _ = _pair(client, researcher)
    a = make_user("annotator")
    aid = client.get("/api/v1/comparison-tasks/next", headers=bearer(a)).json()["assignment_id"]
    body = {"assignment_id": aid, "alignment": "right", "fidelity": "left"}
    first = client.post("/api/v1/comparison-votes", headers=bearer(a), json=body)
    again = client.post("/api/v1/comparison-votes", headers=bearer(a), json=body)
    assert first.status_code == 201 and again.status_code == 200 and again.json() == first.json()
    other = client.post("/api/v1/comparison-votes", headers=bearer(a), json=body | {"fidelity": "tie"})
    assert other.status_code == 409
    bad = client.post("/api/v1/comparison-votes", headers=bearer(a), json=body | {"alignment": "up"})
    assert bad.status_code == 422 and "alignment" in bad.json()["error"]["message"]
    assert db.scalar(select(func.count()).select_from(ComparisonVote)) == 1


def test_comparison_lease_expiry_and_lease_lost(client, researcher, make_user, db, app):
    app.state.settings.lease_sweep_seconds = 0
    _pair(client, researcher, n_votes=1)
    a, b = make_user("annotator"), make_user("annotator")
    aid = client.get("/api/v1/comparison-tasks/next", headers=bearer(a)).json()["assignment_id"]
    assert client.get("/api/v1/comparison-tasks/next", headers=bearer(b)).status_code == 204
    expire_leases(db, "comparison_assignment")
    bid = client.get("/api/v1/comparison-tasks/next", headers=bearer(b)).json()["assignment_id"]
    late = client.post("/api/v1/comparison-votes", headers=bearer(a),
                       json={"assignment_id": aid, "alignment": "left", "fidelity": "left"})
    assert late.status_code == 409 and late.json()["error"]["code"] == "lease_lost"
    ok = client.post("/api/v1/comparison-votes", headers=bearer(b),
                     json={"assignment_id": bid, "alignment": "tie", "fidelity": "tie"})
    assert ok.status_code == 201


def test_create_comparison_validation(client, researcher, make_user):
    pool = make_pool(client, researcher, n_images=3, prompts=["Two dogs", "A red cat"])
    h = bearer(researcher)
    same = client.post("/api/v1/comparisons", headers=h, json={"image_a_id": 1, "image_b_id": 1})
    assert same.status_code == 422
    other_prompt = client.post("/api/v1/comparisons", headers=h,
                               json={"image_a_id": pool.image_ids[0], "image_b_id": pool.image_ids[1]})
    assert other_prompt.status_code == 422 and "same prompt" in other_prompt.json()["error"]["message"]
    missing = client.post("/api/v1/comparisons", headers=h, json={"image_a_id": 1, "image_b_id": 99})
    assert missing.status_code == 422
    ok = client.post("/api/v1/comparisons", headers=h,
                     json={"image_a_id": pool.image_ids[0], "image_b_id": pool.image_ids[2]})
    assert ok.status_code == 201
    dup = client.post("/api/v1/comparisons", headers=h,
                      json={"image_a_id": pool.image_ids[0], "image_b_id": pool.image_ids[2]})
    assert dup.status_code == 409
    assert client.post("/api/v1/comparisons", headers=bearer(make_user("annotator")),
                       json={"image_a_id": 1, "image_b_id": 3}).status_code == 403


def test_gold_pairs_are_scored(client, researcher, make_user, db, settings, app):
    app.state.settings.comparison_gold_rate = 0.5
    pool, comp = _pair(client, researcher)
    client.patch(f"/api/v1/comparisons/{comp['id']}", headers=bearer(researcher),
                 json={"gold_alignment": "a", "gold_fidelity": None})
    bytes_a = client.get(f"/api/v1/images/{pool.image_ids[0]}/file", headers=bearer(researcher)).content
    answered = 0
    for _ in range(8):
        a = make_user("annotator")
        t = client.get("/api/v1/comparison-tasks/next", headers=bearer(a))
        if t.status_code != 200:
            continue
        task = t.json()
        pick_a = "left" if client.get(task["left"]["image_url"], headers=bearer(a)).content == bytes_a else "right"
        client.post("/api/v1/comparison-votes", headers=bearer(a),
                    json={"assignment_id": task["assignment_id"], "alignment": pick_a, "fidelity": "tie"})
        answered += 1
    assert answered == 8  # the only pair is gold: each annotator gets it once nothing else is open
    acc = client.get("/api/v1/annotators/gold-accuracy", headers=bearer(researcher)).json()
    assert len(acc) == answered
    assert all(g["comparison_gold_accuracy"] == 1.0 and g["comparison_gold_answered"] == 1 for g in acc)


def test_pairs_are_blind_no_image_id_reaches_the_rater(client, researcher, make_user, db):
    """Candidate images are made after the baseline's, so ids would tell the models apart: a rater
    gets each side by assignment and side, and cannot fetch images by id at all."""
    pool, comp = _pair(client, researcher)
    files = {i: client.get(f"/api/v1/images/{i}/file", headers=bearer(researcher)).content for i in pool.image_ids}
    a, other = make_user("annotator"), make_user("annotator")
    t = client.get("/api/v1/comparison-tasks/next", headers=bearer(a))
    task = t.json()
    for i in pool.image_ids:
        assert f"/images/{i}" not in t.text and f"image_{'ab'[pool.image_ids.index(i)]}" not in t.text
    left = client.get(task["left"]["image_url"], headers=bearer(a))
    right = client.get(task["right"]["image_url"], headers=bearer(a))
    assert left.status_code == right.status_code == 200 and left.headers["content-type"] == "image/png"
    assert {left.content, right.content} == set(files.values())
    left_is_a = db.scalar(select(ComparisonAssignment.left_is_a)
                          .where(ComparisonAssignment.id == task["assignment_id"]))
    assert left.content == files[pool.image_ids[0 if left_is_a else 1]]
    # someone else's task, a side that does not exist, and the images by id: 404
    assert client.get(task["left"]["image_url"], headers=bearer(other)).status_code == 404
    assert client.get(f"/api/v1/comparison-tasks/{task['assignment_id']}/images/top",
                      headers=bearer(a)).status_code == 422
    for i in pool.image_ids:
        assert client.get(f"/api/v1/images/{i}/file", headers=bearer(a)).status_code == 404


def test_a_rater_fetches_the_files_of_images_given_to_them_to_rate(client, researcher, make_user):
    make_pool(client, researcher, n_images=2, prompts=["A cat"])
    a = make_user("annotator")
    task = client.get("/api/v1/rating-tasks/next", headers=bearer(a)).json()
    assert client.get(task["image_url"], headers=bearer(a)).status_code == 200
    other = make_user("annotator")
    assert client.get(task["image_url"], headers=bearer(other)).status_code == 404


def test_next_pair_with_a_session_cookie_needs_the_csrf_token(client, researcher, make_user, db):
    from tests.conftest import browser_login

    _pair(client, researcher)
    a = make_user("annotator")
    csrf = browser_login(client, a.username, a.password)
    refused = client.get("/api/v1/comparison-tasks/next")  # what a cross-site link would send
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    assert db.scalar(select(func.count()).select_from(ComparisonAssignment)) == 0
    assert client.get("/api/v1/comparison-tasks/next", headers={"X-CSRF-Token": csrf}).status_code == 200


def test_unmarking_gold_keeps_a_pair_to_its_n_distinct_voters(client, researcher, make_user, db, app):
    """Gold leases hold no slot, so votes taken while a pair was gold did not lower votes_open.
    Unmarking it must recount the open slots from the votes stored and the leases still out
    (a gold lease still out then holds a slot), or the pair collects N fresh votes on top."""
    app.state.settings.comparison_gold_rate = 0.5  # a gold pair is served once nothing else is open
    _pool, comp = _pair(client, researcher, n_votes=3)
    gold = client.patch(f"/api/v1/comparisons/{comp['id']}", headers=bearer(researcher),
                        json={"gold_alignment": "a", "gold_fidelity": None})
    assert gold.status_code == 200

    def vote(acct, assignment_id):
        r = client.post("/api/v1/comparison-votes", headers=bearer(acct),
                        json={"assignment_id": assignment_id, "alignment": "left", "fidelity": "tie"})
        assert r.status_code == 201, r.text

    voted_while_gold, holding_gold = make_user("annotator"), make_user("annotator")
    vote(voted_while_gold, client.get("/api/v1/comparison-tasks/next", headers=bearer(voted_while_gold))
         .json()["assignment_id"])
    held = client.get("/api/v1/comparison-tasks/next", headers=bearer(holding_gold)).json()["assignment_id"]

    unset = client.patch(f"/api/v1/comparisons/{comp['id']}", headers=bearer(researcher),
                         json={"gold_alignment": None, "gold_fidelity": None})
    assert unset.status_code == 200 and unset.json()["gold_alignment"] is None
    # 3 wanted - 1 vote stored - 1 lease still out
    assert db.scalar(select(Comparison.votes_open)) == 1
    db.rollback()

    for _ in range(5):
        a = make_user("annotator")
        t = client.get("/api/v1/comparison-tasks/next", headers=bearer(a))
        if t.status_code == 200:
            vote(a, t.json()["assignment_id"])
    vote(holding_gold, held)  # the lease taken while the pair was gold is still answered
    voters = db.execute(select(ComparisonVote.annotator_id)).scalars().all()
    assert len(voters) == 3 and len(set(voters)) == 3
    assert db.scalar(select(Comparison.votes_open)) == 0


def test_a_query_shows_four_images_a_side_blind(client, researcher, make_user, db):
    """The paper's query: 4 images of each model; the task lists every image of each side by
    assignment, side and place, and the server maps the sides as for one pair."""
    from app.db.models import ComparisonImage

    pool = make_pool(client, researcher, n_images=8, prompts=["Two dogs"])
    side_a, side_b = pool.image_ids[:4], pool.image_ids[4:]
    comp = client.post("/api/v1/comparisons", headers=bearer(researcher),
                       json={"image_a_id": side_a[0], "image_b_id": side_b[0], "votes_wanted": 1}).json()
    db.add_all([ComparisonImage(comparison_id=comp["id"], side=s, position=i, image_id=image)
                for s, images in (("a", side_a), ("b", side_b)) for i, image in enumerate(images)])
    db.commit()
    files = {i: client.get(f"/api/v1/images/{i}/file", headers=bearer(researcher)).content for i in pool.image_ids}
    a = make_user("annotator")
    task = client.get("/api/v1/comparison-tasks/next", headers=bearer(a)).json()
    left_is_a = db.scalar(select(ComparisonAssignment.left_is_a)
                          .where(ComparisonAssignment.id == task["assignment_id"]))
    shown = {s: [client.get(u, headers=bearer(a)).content for u in task[s]["image_urls"]] for s in ("left", "right")}
    assert shown["left" if left_is_a else "right"] == [files[i] for i in side_a]
    assert shown["right" if left_is_a else "left"] == [files[i] for i in side_b]
    assert task["left"]["image_url"] == task["left"]["image_urls"][0]
    assert all(f"/images/{i}" not in str(task) for i in pool.image_ids)
    url = f"/api/v1/comparison-tasks/{task['assignment_id']}/images/left"
    assert client.get(f"{url}/4", headers=bearer(a)).status_code == 404
    assert client.get(f"{url}/1", headers=bearer(make_user("annotator"))).status_code == 404


def test_a_vote_is_undone_by_its_author_and_the_pair_comes_back_with_its_sides(client, researcher, make_user, db):
    _pair(client, researcher, n_votes=1)
    a, b = make_user("annotator"), make_user("annotator")
    task = client.get("/api/v1/comparison-tasks/next", headers=bearer(a)).json()
    aid = task["assignment_id"]
    body = {"assignment_id": aid, "alignment": "left", "fidelity": "right"}
    assert client.post("/api/v1/comparison-votes", headers=bearer(a), json=body).status_code == 201

    assert client.post(f"/api/v1/comparison-votes/{aid}/undo", headers=bearer(b)).status_code == 404  # not b's
    undone = client.post(f"/api/v1/comparison-votes/{aid}/undo", headers=bearer(a))
    assert undone.status_code == 200, undone.text
    back = undone.json()
    assert back["assignment_id"] == aid and back["left"] == task["left"] and back["right"] == task["right"]
    assert db.scalar(select(func.count()).select_from(ComparisonVote)) == 0
    db.rollback()
    again = client.post(f"/api/v1/comparison-votes/{aid}/undo", headers=bearer(a))
    assert again.status_code == 409 and again.json()["error"]["code"] == "nothing_to_undo"

    # the lease came back to the same rater and still holds the pair's one slot: nobody else gets it
    assert client.get("/api/v1/comparison-tasks/next", headers=bearer(b)).status_code == 204
    assert client.get("/api/v1/comparison-tasks/next", headers=bearer(a)).json()["assignment_id"] == aid
    changed = client.post("/api/v1/comparison-votes", headers=bearer(a), json=body | {"alignment": "tie"})
    assert changed.status_code == 201 and changed.json()["alignment"] == "tie"
    repeat = client.post("/api/v1/comparison-votes", headers=bearer(a), json=body | {"alignment": "tie"})
    assert repeat.status_code == 200
    assert db.scalar(select(func.count()).select_from(ComparisonVote)) == 1
    assert db.scalar(select(Comparison.votes_open)) == 0


def test_a_vote_cannot_be_undone_after_its_lease_ran_out(client, researcher, make_user, db):
    _pair(client, researcher, n_votes=2)
    a = make_user("annotator")
    aid = client.get("/api/v1/comparison-tasks/next", headers=bearer(a)).json()["assignment_id"]
    client.post("/api/v1/comparison-votes", headers=bearer(a),
                json={"assignment_id": aid, "alignment": "left", "fidelity": "left"})
    db.execute(text("UPDATE comparison_assignment SET lease_expires_at = now() - interval '1 second'"))
    db.commit()
    late = client.post(f"/api/v1/comparison-votes/{aid}/undo", headers=bearer(a))
    assert late.status_code == 409 and late.json()["error"]["code"] == "undo_expired"
    assert db.scalar(select(func.count()).select_from(ComparisonVote)) == 1
