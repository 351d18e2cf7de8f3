"""The pool an annotator works on (issue 13, item 7): labels or votes wanted, done, left, and their share,
for one prompt set / evaluation or all of them."""

from __future__ import annotations

from tests.admin import factories as f
from tests.conftest import bearer


def test_pool_progress_for_ratings_and_votes(client, db, make_user):
    me, other = make_user("annotator", username="me"), make_user("annotator", username="other")
    ps = f.prompt_set(db, "set", k=2)
    p = f.prompt(db, ps, "two dogs", "count")
    a, b = f.image(db, p, wanted=2), f.image(db, p, wanted=2)
    gold = f.image(db, p, gold="good")  # gold items are neither wanted nor done
    f.rating(db, a, me.id, "good")
    f.rating(db, a, other.id, "bad")
    f.rating(db, b, me.id, "skip")  # a skip is no label
    f.rating(db, gold, me.id, "good")
    elsewhere = f.prompt_set(db, "elsewhere")
    f.image(db, f.prompt(db, elsewhere, "a cat", "other"), wanted=1)
    ev_set = f.prompt_set(db, "eval", purpose="evaluation")
    q = f.prompt(db, ev_set, "a red box", "color")
    ev = f.evaluation(db, ev_set, votes=3)
    pair = f.comparison(db, ev, q, f.image(db, q), f.image(db, q))
    f.vote(db, pair, me.id, "b", "a")
    db.commit()

    h = bearer(me)
    mine = client.get("/api/v1/me/progress", headers=h, params={"prompt_set_id": ps.id}).json()
    assert mine == {"kind": "ratings", "prompt_set_id": ps.id, "evaluation_id": None, "wanted": 4, "done": 2,
                    "left": 2, "mine": 1, "my_share": 0.5}
    every = client.get("/api/v1/me/progress", headers=h).json()
    # all sets: + the other set's 1 label and the evaluation set's 2 images (1 label wanted each)
    assert (every["wanted"], every["done"], every["left"], every["prompt_set_id"]) == (7, 2, 5, None)
    votes = client.get("/api/v1/me/progress", headers=h, params={"kind": "votes", "evaluation_id": ev.id}).json()
    assert (votes["wanted"], votes["done"], votes["left"], votes["mine"], votes["my_share"]) == (3, 1, 2, 1, 1.0)
    fresh = client.get("/api/v1/me/progress", headers=bearer(make_user("annotator", username="new")),
                       params={"prompt_set_id": elsewhere.id}).json()
    assert (fresh["done"], fresh["mine"], fresh["my_share"]) == (0, 0, None)
    assert client.get("/api/v1/me/progress").status_code == 401
