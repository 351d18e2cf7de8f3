"""A page that goes away hands its leases back (issue 13, item 3): POST /api/v1/leases/release, a form
so that navigator.sendBeacon can send it, CSRF-checked for a session cookie."""

from __future__ import annotations

from sqlalchemy import select

from app.db.models import Comparison, Image
from tests.annotation.conftest import make_pool
from tests.conftest import bearer, browser_login


def _next(client, who, prefetch=1):
    r = client.get(f"/api/v1/rating-tasks/next?prefetch={prefetch}", headers=bearer(who))
    return [] if r.status_code == 204 else [r.json(), *r.json()["prefetched"]]


def test_released_leases_go_to_the_next_annotator_at_once(client, researcher, make_user, db):
    make_pool(client, researcher, n_images=2)
    a, b = make_user("annotator"), make_user("annotator")
    held = _next(client, a, prefetch=2)
    assert len(held) == 2 and _next(client, b) == []
    answered, kept = held
    client.post("/api/v1/ratings", headers=bearer(a), json={"assignment_id": answered["assignment_id"],
                                                             "label": "good"})

    # b cannot hand back a's lease; an answered assignment is not a lease any more
    r = client.post("/api/v1/leases/release", headers=bearer(b),
                    data={"rating_assignment_id": [str(kept["assignment_id"])]})
    assert r.status_code == 200 and r.json() == {"ratings": 0, "comparisons": 0}
    r = client.post("/api/v1/leases/release", headers=bearer(a),
                    data={"rating_assignment_id": [str(answered["assignment_id"]), str(kept["assignment_id"])]})
    assert r.status_code == 200 and r.json() == {"ratings": 1, "comparisons": 0}
    again = client.post("/api/v1/leases/release", headers=bearer(a),
                        data={"rating_assignment_id": [str(kept["assignment_id"])]})
    assert again.json() == {"ratings": 0, "comparisons": 0}  # idempotent

    assert [t["image_id"] for t in _next(client, b)] == [kept["image_id"]]
    opens = dict(db.execute(select(Image.id, Image.ratings_open)).all())
    assert opens == {answered["image_id"]: 0, kept["image_id"]: 0}  # exactly K: b's lease holds the slot


def test_a_released_pair_keeps_its_n_distinct_voters(client, researcher, make_user, db):
    pool = make_pool(client, researcher, n_images=2, prompts=["Two dogs"])
    client.post("/api/v1/comparisons", headers=bearer(researcher),
                json={"image_a_id": pool.image_ids[0], "image_b_id": pool.image_ids[1], "votes_wanted": 1})
    a, b = make_user("annotator"), make_user("annotator")
    task = client.get("/api/v1/comparison-tasks/next", headers=bearer(a)).json()
    assert client.get("/api/v1/comparison-tasks/next", headers=bearer(b)).status_code == 204
    r = client.post("/api/v1/leases/release", headers=bearer(a),
                    data={"comparison_assignment_id": [str(task["assignment_id"])]})
    assert r.json() == {"ratings": 0, "comparisons": 1}
    assert db.scalar(select(Comparison.votes_open)) == 1
    db.rollback()
    assert client.get("/api/v1/comparison-tasks/next", headers=bearer(b)).status_code == 200
    assert db.scalar(select(Comparison.votes_open)) == 0


def test_release_with_a_session_cookie_needs_the_csrf_field(client, researcher, make_user):
    make_pool(client, researcher, n_images=1)
    a = make_user("annotator")
    csrf = browser_login(client, a.username, a.password)
    aid = client.get("/api/v1/rating-tasks/next", headers={"X-CSRF-Token": csrf}).json()["assignment_id"]
    refused = client.post("/api/v1/leases/release", data={"rating_assignment_id": [str(aid)]})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    ok = client.post("/api/v1/leases/release", data={"rating_assignment_id": [str(aid)], "csrf_token": csrf})
    assert ok.status_code == 200 and ok.json()["ratings"] == 1
