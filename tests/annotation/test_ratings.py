"""The rating engine over REST: leases, overlap, idempotent submit, late answers, skip, undo, gold."""

from __future__ import annotations

from sqlalchemy import func, select, text

from app.db.models import Image, Rating, RatingAssignment
from tests.annotation.conftest import expire_leases, make_pool
from tests.conftest import bearer


def _next(client, acct, **params):
    return client.get("/api/v1/rating-tasks/next", headers=bearer(acct), params=params)


def _rate(client, acct, assignment_id, label="good", **extra):
    return client.post("/api/v1/ratings", headers=bearer(acct),
                       json={"assignment_id": assignment_id, "label": label, **extra})


def test_next_leases_and_returns_the_same_lease_until_answered(client, researcher, make_user, app):
    app.state.settings.lease_sweep_seconds = 0
    make_pool(client, researcher, n_images=3)
    a = make_user("annotator")
    first = _next(client, a).json()
    assert _next(client, a).json()["assignment_id"] == first["assignment_id"]  # no hoarding
    batch = _next(client, a, prefetch=3).json()
    ids = [batch["assignment_id"]] + [t["assignment_id"] for t in batch["prefetched"]]
    assert ids[0] == first["assignment_id"] and len(set(ids)) == 3
    assert "gold" not in str(batch).lower()
    assert _rate(client, a, first["assignment_id"], duration_ms=1500).status_code == 201
    assert _next(client, a).json()["assignment_id"] == ids[1]


def test_exact_overlap_distinct_annotators_and_204_when_done(client, researcher, make_user, db):
    pool = make_pool(client, researcher, n_images=2, k=2)
    annotators = [make_user("annotator") for _ in range(3)]
    for a in annotators[:2]:
        while (r := _next(client, a)).status_code == 200:
            assert _rate(client, a, r.json()["assignment_id"], "bad").status_code == 201
        assert r.status_code == 204
    assert _next(client, annotators[2]).status_code == 204  # K=2 reached everywhere
    per_image = dict(db.execute(select(Rating.image_id, func.count(func.distinct(Rating.annotator_id)))
                                .group_by(Rating.image_id)).all())
    assert per_image == {i: 2 for i in pool.image_ids}
    assert db.scalar(select(func.sum(Image.ratings_open))) == 0


def test_items_closest_to_completion_come_first(client, researcher, make_user):
    pool = make_pool(client, researcher, n_images=3, k=3)
    a, b = make_user("annotator"), make_user("annotator")
    # a labels the last image and skips the others: the last needs 2 more labels, the others 3
    batch = _next(client, a, prefetch=3).json()
    by_image = {t["image_id"]: t["assignment_id"] for t in [batch, *batch["prefetched"]]}
    for image_id, aid in by_image.items():
        assert _rate(client, a, aid, "good" if image_id == pool.image_ids[2] else "skip").status_code == 201
    assert _next(client, b).json()["image_id"] == pool.image_ids[2]


def test_identical_retry_conflicting_retry_and_foreign_assignment(client, researcher, make_user, db):
    make_pool(client, researcher, n_images=1)
    a, b = make_user("annotator"), make_user("annotator")
    aid = _next(client, a).json()["assignment_id"]
    first = _rate(client, a, aid, "good", duration_ms=900)
    assert first.status_code == 201
    again = _rate(client, a, aid, "good", duration_ms=900)
    assert again.status_code == 200 and again.json() == first.json()
    other = _rate(client, a, aid, "bad")
    assert other.status_code == 409 and other.json()["error"]["code"] == "already_answered"
    assert _rate(client, b, aid, "bad").status_code == 404
    assert _rate(client, a, 424242, "bad").status_code == 404
    bad_label = client.post("/api/v1/ratings", headers=bearer(a), json={"assignment_id": aid, "label": "meh"})
    assert bad_label.status_code == 422 and "label" in bad_label.json()["error"]["message"]
    assert db.scalar(select(func.count()).select_from(Rating)) == 1
    assert db.scalar(select(Rating.label)) == "good"


def test_lease_expiry_returns_the_item_and_late_answers(client, researcher, make_user, db, app):
    app.state.settings.lease_sweep_seconds = 0
    make_pool(client, researcher, n_images=1, k=1)
    a, b, c = make_user("annotator"), make_user("annotator"), make_user("annotator")
    lease_a = _next(client, a).json()["assignment_id"]
    assert _next(client, b).status_code == 204  # the only slot is leased to a
    expire_leases(db)
    lease_b = _next(client, b).json()["assignment_id"]  # the sweep returned it; b takes it over
    late = _rate(client, a, lease_a, "good")
    assert late.status_code == 409 and late.json()["error"]["code"] == "lease_lost"
    assert "handed to another annotator" in late.json()["error"]["message"]
    assert _rate(client, b, lease_b, "bad").status_code == 201
    assert db.scalar(select(func.count()).select_from(Rating)) == 1
    # b's answer stands, a's was not stored, the image is complete
    assert db.scalar(select(Image.ratings_open)) == 0
    assert _next(client, c).status_code == 204


def test_late_answer_is_accepted_when_nobody_took_over(client, researcher, make_user, db, app):
    app.state.settings.lease_sweep_seconds = 0
    make_pool(client, researcher, n_images=1, k=1)
    other = make_pool(client, researcher, n_images=1, k=1, name="other", prompts=["Five cups"])
    a, b = make_user("annotator"), make_user("annotator")
    lease_a = _next(client, a, prompt_set_id=1).json()["assignment_id"]
    expire_leases(db)
    # b works on another set; its next sweeps a's expired lease back into the pool
    assert _next(client, b, prompt_set_id=other.prompt_set_id).status_code == 200
    assert db.scalar(select(RatingAssignment.state).where(RatingAssignment.id == lease_a)) == "released"
    r = _rate(client, a, lease_a, "good")
    assert r.status_code == 201, r.text
    assert db.scalar(select(Image.ratings_open).where(Image.prompt_set_id == 1)) == 0
    assert _next(client, make_user("annotator"), prompt_set_id=1).status_code == 204


def test_expired_lease_comes_back_to_the_same_annotator(client, researcher, make_user, db, app):
    app.state.settings.lease_sweep_seconds = 0
    make_pool(client, researcher, n_images=1, k=1)
    a = make_user("annotator")
    first = _next(client, a).json()
    expire_leases(db)
    again = _next(client, a)
    assert again.status_code == 200 and again.json()["image_id"] == first["image_id"]
    assert _rate(client, a, again.json()["assignment_id"]).status_code == 201


def test_skip_is_kept_excluded_and_frees_the_slot(client, researcher, make_user, db):
    make_pool(client, researcher, n_images=1, k=1)
    a, b = make_user("annotator"), make_user("annotator")
    aid = _next(client, a).json()["assignment_id"]
    r = _rate(client, a, aid, "skip", skip_reason="too blurry to tell")
    assert r.status_code == 201 and r.json()["skip_reason"] == "too blurry to tell"
    assert _next(client, a).status_code == 204  # never the same item again for a
    bid = _next(client, b).json()["assignment_id"]  # the slot went back to the pool
    assert _rate(client, b, bid, "good").status_code == 201
    labels = sorted(db.scalars(select(Rating.label)))
    assert labels == ["good", "skip"]
    progress = client.get("/api/v1/prompt-sets/1", headers=bearer(researcher)).json()["progress"]["total"]
    assert progress["labels_done"] == 1 and progress["skip"] == 1 and progress["labels_wanted"] == 1


def test_undo_while_the_lease_holds(client, researcher, make_user, db):
    make_pool(client, researcher, n_images=2, k=1)
    a = make_user("annotator")
    aid = _next(client, a).json()["assignment_id"]
    _rate(client, a, aid, "bad")
    undone = client.post(f"/api/v1/ratings/{aid}/undo", headers=bearer(a))
    assert undone.status_code == 200 and undone.json()["assignment_id"] == aid
    assert db.scalar(select(func.count()).select_from(Rating)) == 0
    assert _next(client, a).json()["assignment_id"] == aid  # it is back at the front
    assert _rate(client, a, aid, "good").status_code == 201
    nothing = client.post("/api/v1/ratings/999/undo", headers=bearer(a))
    assert nothing.status_code == 404
    db.execute(text("UPDATE rating_assignment SET lease_expires_at = now() - interval '1 second'"))
    db.commit()
    late = client.post(f"/api/v1/ratings/{aid}/undo", headers=bearer(a))
    assert late.status_code == 409 and late.json()["error"]["code"] == "undo_expired"
    assert db.scalar(select(Rating.label)) == "good"


def test_gold_items_are_mixed_in_scored_and_never_revealed(client, researcher, make_user, db):
    pool = make_pool(client, researcher, n_images=4, k=1, gold_rate=0.5)
    gold_id = pool.image_ids[0]
    r = client.patch(f"/api/v1/images/{gold_id}", headers=bearer(researcher), json={"gold_label": "good"})
    assert r.status_code == 200 and r.json()["gold_label"] == "good"
    annotators = [make_user("annotator") for _ in range(3)]
    seen_gold = 0
    for i, a in enumerate(annotators):
        while (t := _next(client, a)).status_code == 200:
            body = t.json()
            assert "gold" not in t.text
            seen_gold += body["image_id"] == gold_id
            label = "good" if (body["image_id"] != gold_id or i != 1) else "bad"
            posted = _rate(client, a, body["assignment_id"], label)
            assert posted.status_code == 201 and "gold" not in posted.text
    # the gold image reaches every annotator regardless of K (at the latest once nothing else is
    # left for them); normal images stay at K=1
    assert seen_gold == 3
    assert db.scalar(select(func.count()).select_from(Rating).where(Rating.image_id == gold_id)) == 3
    normal = db.execute(select(Rating.image_id, func.count()).where(Rating.image_id != gold_id)
                        .group_by(Rating.image_id)).all()
    assert all(n == 1 for _, n in normal) and len(normal) == 3
    acc = {g["username"]: g for g in client.get("/api/v1/annotators/gold-accuracy", headers=bearer(researcher)).json()}
    assert acc[annotators[1].username]["rating_gold_accuracy"] == 0.0
    assert all(acc[a.username]["rating_gold_accuracy"] == 1.0 for a in (annotators[0], annotators[2]))
    assert client.get("/api/v1/annotators/gold-accuracy", headers=bearer(annotators[0])).status_code == 403


def test_stats_count_today(client, researcher, make_user):
    make_pool(client, researcher, n_images=2)
    a = make_user("annotator")
    _rate(client, a, _next(client, a).json()["assignment_id"])
    stats = client.get("/api/v1/me/stats", headers=bearer(a)).json()
    assert stats["ratings_today"] == 1 and stats["ratings_total"] == 1
    later = client.get("/api/v1/me/stats", headers=bearer(a), params={"since": "2999-01-01T00:00:00Z"}).json()
    assert later["ratings_today"] == 0 and later["ratings_total"] == 1


def test_a_gold_recount_keeps_the_slot_of_an_expired_unswept_lease(client, researcher, make_user, db, app,
                                                                   monkeypatch):
    """Until the sweep releases it, an expired lease still holds its slot (its late answer may be
    accepted). A recount that treated the slot as free let a second annotator in: K + 1 labels."""
    import time

    from app.annotation import leases

    app.state.settings.lease_sweep_seconds = 3600
    monkeypatch.setitem(leases._last_sweep, "rating", time.monotonic())  # no sweep during the test
    pool = make_pool(client, researcher, n_images=1, k=1)
    a, b = make_user("annotator"), make_user("annotator")
    held = _next(client, a).json()
    expire_leases(db)
    for label in ("good", None):  # marking gold and back recounts the open slots
        r = client.patch(f"/api/v1/images/{pool.image_ids[0]}", headers=bearer(researcher), json={"gold_label": label})
        assert r.status_code == 200
    assert db.scalar(select(Image.ratings_open)) == 0
    assert _next(client, b).status_code == 204
    assert _rate(client, a, held["assignment_id"]).status_code == 201  # the late answer is the one label
    assert db.scalar(select(func.count()).select_from(Rating)) == 1
