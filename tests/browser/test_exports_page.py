"""The exports page in Chromium: a researcher finds it in the top bar, picks a format and filters,
downloads, and the file loads with pandas and `datasets.load_dataset("parquet", ...)`."""

from __future__ import annotations

import json

import pytest

from tests.admin import factories as f
from tests.browser.conftest import log_in, screenshot


def _seed(db, make_user):
    ann = make_user("annotator", username="exporter")
    mine = f.prompt_set(db, "counts <b>bold</b>")
    dogs = f.prompt(db, mine, "two dogs", "count")
    dogs.attributes = {"object": "dog", "count": 2}
    other = f.prompt_set(db, "other set")
    cat = f.prompt(db, other, "a cat", "other")
    for im, label in ((f.image(db, dogs), "good"), (f.image(db, dogs), "bad"), (f.image(db, cat), "good")):
        f.rating(db, im, ann.id, label)
    evs = f.prompt_set(db, "held out", purpose="evaluation")
    box = f.prompt(db, evs, "a red box", "color")
    ev = f.evaluation(db, evs, "tuned vs base", votes=1)
    f.vote(db, f.comparison(db, ev, box, f.image(db, box), f.image(db, box)), ann.id, "b", "a")
    db.commit()
    return mine, ev


def test_exports_page_downloads_files_that_load(page, db, make_user, tmp_path):
    datasets = pytest.importorskip("datasets")
    pd = pytest.importorskip("pandas")
    mine, ev = _seed(db, make_user)
    log_in(page, "/", make_user("researcher", username="rita"))
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Exports").click()
    page.wait_for_url("**/exports")
    # untrusted names stay text
    assert page.locator("#ratings-set option", has_text="counts <b>bold</b>").count() == 1
    assert page.locator("#ratings-set b").count() == 0

    page.select_option("#ratings-set", str(mine.id))
    with page.expect_download() as info:
        page.get_by_role("button", name="Download ratings").click()
    download = info.value
    assert download.suggested_filename == f"ratings-prompt-set-{mine.id}.parquet"
    path = tmp_path / download.suggested_filename
    download.save_as(str(path))
    frame = pd.read_parquet(path)
    assert sorted(frame["label"]) == ["bad", "good"] and set(frame["prompt"]) == {"two dogs"}
    assert frame.loc[0, "attributes"]["count"] == 2
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == 2 and ds[0]["attributes"]["object"] == "dog"

    # votes as JSON Lines, every evaluation ("all" sends an empty filter)
    page.check('form[data-export="votes"] input[value="jsonl"]')
    with page.expect_download() as info:
        page.get_by_role("button", name="Download votes").click()
    assert info.value.suggested_filename == "votes-all.jsonl"
    votes_path = tmp_path / "votes.jsonl"
    info.value.save_as(str(votes_path))
    rows = [json.loads(line) for line in votes_path.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["evaluation_id"] == ev.id and isinstance(rows[0]["attributes"], dict)
    screenshot(page, "exports")
