"""Ratings and votes exports take the same optional filters, carry `attributes` as an object (not a JSON
string inside JSON), and their Parquet files load with `datasets.load_dataset("parquet", ...)` and pandas."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest

from tests.admin import factories as f
from tests.conftest import bearer


def _seed(db, make_user):
    ann = [make_user("annotator", username=f"exp{i}") for i in range(2)]
    train = f.prompt_set(db, "train")
    two_dogs = f.prompt(db, train, "two dogs", "count")
    two_dogs.attributes = {"object": "dog", "count": 2}
    green_cat = f.prompt(db, train, "a green cat", "color")
    green_cat.attributes = {"object": "cat", "color": "green"}
    other = f.prompt_set(db, "other")
    free = f.prompt(db, other, "whatever <b>you</b> like", "other")  # outside the grammar: no attributes
    for im, label in ((f.image(db, two_dogs), "good"), (f.image(db, green_cat), "bad"), (f.image(db, free), "good")):
        f.rating(db, im, ann[0].id, label)
    evs = f.prompt_set(db, "held out", purpose="evaluation")
    red_box = f.prompt(db, evs, "a red box", "color")
    red_box.attributes = {"object": "box", "color": "red"}
    ev = f.evaluation(db, evs, "tuned vs base", votes=2)
    c = f.comparison(db, ev, red_box, f.image(db, red_box), f.image(db, red_box))
    f.vote(db, c, ann[0].id, "b", "tie", left_is_a=False)
    f.vote(db, c, ann[1].id, "a", "b")
    db.commit()
    return {"train": train, "other": other, "evs": evs, "ev": ev}


def _jsonl(r) -> list[dict]:
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines()]


def test_both_exports_take_the_same_optional_filters(client, db, make_user, researcher):
    s = _seed(db, make_user)
    h = bearer(researcher)
    every = _jsonl(client.get("/api/v1/exports/ratings", headers=h))  # no prompt_set_id needed any more
    assert len(every) == 3 and {r["prompt_set_id"] for r in every} == {s["train"].id, s["other"].id}
    r = client.get("/api/v1/exports/ratings", headers=h, params={"prompt_set_id": s["train"].id})
    assert [row["prompt"] for row in _jsonl(r)] == ["two dogs", "a green cat"]
    assert r.headers["content-disposition"] == f'attachment; filename="ratings-prompt-set-{s["train"].id}.jsonl"'
    # an empty value (what the exports page's "all" sends) is no filter
    assert len(_jsonl(client.get("/api/v1/exports/ratings?prompt_set_id=", headers=h))) == 3
    assert "ratings-all.jsonl" in client.get("/api/v1/exports/ratings", headers=h).headers["content-disposition"]

    votes = _jsonl(client.get("/api/v1/exports/votes", headers=h, params={"prompt_set_id": s["evs"].id}))
    assert len(votes) == 2 and {v["prompt_set_id"] for v in votes} == {s["evs"].id}
    assert _jsonl(client.get("/api/v1/exports/votes", headers=h, params={"prompt_set_id": s["train"].id})) == []
    both = client.get("/api/v1/exports/votes", headers=h,
                      params={"prompt_set_id": s["evs"].id, "evaluation_id": s["ev"].id})
    assert len(_jsonl(both)) == 2
    assert client.get("/api/v1/exports/votes?evaluation_id=&prompt_set_id=", headers=h).status_code == 200
    for path, params in (("ratings", {"prompt_set_id": 999999}), ("votes", {"prompt_set_id": 999999}),
                         ("votes", {"evaluation_id": 999999})):
        assert client.get(f"/api/v1/exports/{path}", headers=h, params=params).status_code == 404
    assert client.get("/api/v1/exports/ratings?prompt_set_id=abc", headers=h).status_code == 422


def test_attributes_are_an_object_in_both_exports(client, db, make_user, researcher):
    _seed(db, make_user)
    h = bearer(researcher)
    ratings = {r["prompt"]: r for r in _jsonl(client.get("/api/v1/exports/ratings", headers=h))}
    assert ratings["two dogs"]["attributes"] == {"object": "dog", "count": 2, "color": None, "background": None}
    assert ratings["whatever <b>you</b> like"]["attributes"] == dict.fromkeys(("object", "count", "color",
                                                                                  "background"))
    vote = _jsonl(client.get("/api/v1/exports/votes", headers=h))[0]
    assert vote["attributes"] == {"object": "box", "count": None, "color": "red", "background": None}
    table = pq.read_table(io.BytesIO(client.get("/api/v1/exports/ratings?format=parquet", headers=h).content))
    assert str(table.schema.field("attributes").type).startswith("struct<object: string, count: int64")
    assert table.to_pylist()[0]["attributes"]["count"] == 2


def test_parquet_exports_load_with_datasets_and_pandas(client, db, make_user, researcher, tmp_path):
    datasets = pytest.importorskip("datasets")
    pd = pytest.importorskip("pandas")
    _seed(db, make_user)
    h = bearer(researcher)
    files = {}
    for what in ("ratings", "votes"):
        path = tmp_path / f"{what}.parquet"
        path.write_bytes(client.get(f"/api/v1/exports/{what}", headers=h, params={"format": "parquet"}).content)
        files[what] = path

    ratings = datasets.load_dataset("parquet", data_files=str(files["ratings"]), split="train",
                                    cache_dir=str(tmp_path / "hf-cache"))
    assert ratings.num_rows == 3 and ratings[0]["prompt"] == "two dogs"
    assert ratings[0]["attributes"] == {"object": "dog", "count": 2, "color": None, "background": None}
    assert set(ratings.features["attributes"]) == {"object", "count", "color", "background"}
    votes = datasets.load_dataset("parquet", data_files=str(files["votes"]), split="train",
                                  cache_dir=str(tmp_path / "hf-cache"))
    assert votes.num_rows == 2 and sorted(votes["alignment"]) == ["a", "b"]

    frame = pd.read_parquet(files["ratings"])
    assert list(frame["label"]) == ["good", "bad", "good"]
    assert frame.loc[1, "attributes"]["color"] == "green"
    assert str(frame["created_at"].dt.tz) == "UTC"
    vf = pd.read_parquet(files["votes"])
    assert (vf["left_image_id"] == vf["image_b_id"]).sum() == 1
