"""Overview: per category done / wanted, good / bad / skip, pace and time to completion vs the database."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select

from app.db.base import utcnow
from app.db.models import Image, Prompt, Rating
from tests.admin import factories as f
from tests.admin.html import block, figure


def _seed(db, make_user):
    users = [make_user("annotator").id for _ in range(3)]
    now = utcnow()
    ps = f.prompt_set(db, "dogs & <cats>", k=2)
    count = f.prompt(db, ps, "two dogs", "count")
    color = f.prompt(db, ps, "a green cat", "color")
    c1, c2, k1 = f.image(db, count, wanted=2), f.image(db, count, wanted=2), f.image(db, color, wanted=2)
    gold = f.image(db, count, gold="good")  # gold images count neither as wanted nor as done
    f.rating(db, c1, users[0], "good", at=now - timedelta(hours=2))
    f.rating(db, c1, users[1], "bad", at=now - timedelta(hours=3))
    f.rating(db, c2, users[0], "good", at=now - timedelta(days=3))
    f.rating(db, c2, users[1], "skip", at=now - timedelta(hours=1))
    f.rating(db, k1, users[2], "bad", at=now - timedelta(hours=5))
    f.rating(db, gold, users[0], "good", at=now - timedelta(hours=1))
    idle = f.prompt_set(db, "idle", k=1)
    f.image(db, f.prompt(db, idle, "a dog in the city", "background"))
    db.commit()
    return ps, idle


def _db_counts(db, ps_id: int, category: str) -> dict[str, int]:
    base = (
        select(func.count())
        .select_from(Rating)
        .join(Image, Image.id == Rating.image_id)
        .join(Prompt, Prompt.id == Image.prompt_id)
        .where(Rating.prompt_set_id == ps_id, Prompt.category == category, Image.gold_label.is_(None))
    )
    out = {lab: db.scalar(base.where(Rating.label == lab)) for lab in ("good", "bad", "skip")}
    out["done"] = out["good"] + out["bad"]
    out["wanted"] = db.scalar(
        select(func.sum(Image.ratings_wanted))
        .join(Prompt, Prompt.id == Image.prompt_id)
        .where(Image.prompt_set_id == ps_id, Prompt.category == category, Image.gold_label.is_(None))
    )
    out["last24"] = db.scalar(
        base.where(Rating.label != "skip", Rating.created_at >= utcnow() - timedelta(hours=24))
    )
    return out


def test_overview_figures_match_the_database(client, admin, db, make_user):
    ps, idle = _seed(db, make_user)
    page = client.get("/admin").text
    assert "dogs &amp; &lt;cats&gt;" in page  # names are escaped
    section = page.split(f'id="set-{ps.id}"')[1].split("</section>")[0]
    for category in ("count", "color"):
        row = block(section, "data-category", category)
        expected = _db_counts(db, ps.id, category)
        for name in ("done", "wanted", "good", "bad", "skip", "last24"):
            assert figure(row, name) == str(expected[name]), (category, name)
    assert (_db_counts(db, ps.id, "count")["done"], _db_counts(db, ps.id, "count")["wanted"]) == (3, 4)
    assert (
        figure(block(section, "data-category", "count"), "shares") == "(50% / 25% / 25%)"
    )  # 2 good, 1 bad, 1 skip

    total = block(section, "data-category", "total")
    assert (figure(total, "done"), figure(total, "wanted"), figure(total, "last24")) == ("4", "6", "3")
    # remaining 6 - 4 = 2 labels at 3 labels / 24 h = 0.125 / h -> 16 h
    assert figure(total, "eta") == "16.0 h"
    assert figure(block(section, "data-category", "count"), "eta") == "12.0 h"  # 1 left at 2 labels / 24 h

    # 7-day chart: one bar per hour that had labels (gold and skips excluded), drawn as SVG
    assert section.count('<rect class="bar"') == 4
    assert "(UTC; 4 labels" in section

    idle_section = page.split(f'id="set-{idle.id}"')[1].split("</section>")[0]
    assert figure(block(idle_section, "data-category", "total"), "eta") == "—"  # no pace, no estimate


def test_overview_has_no_inline_script_or_style(client, admin, db, make_user):
    _seed(db, make_user)
    page = client.get("/admin").text
    assert "style=" not in page and "<script>" not in page and "onclick" not in page


def test_overview_lists_sets_with_work_first_and_explains_empty_ones(client, admin, db, make_user):
    """The demo made an evaluation set first; an admin's first sight was its empty progress table."""
    empty_eval = f.prompt_set(db, "demo evaluation", purpose="evaluation")
    f.prompt(db, empty_eval, "a red box", "color")
    older, newer = _seed(db, make_user)
    db.commit()
    page = client.get("/admin").text
    order = [int(m) for m in re.findall(r'<section class="card" id="set-(\d+)"', page)]
    assert order[-1] == empty_eval.id and order.index(newer.id) < order.index(older.id)  # newest work first
    section = page.split(f'id="set-{empty_eval.id}"')[1].split("</section>")[0]
    assert "Nothing to label in this set" in section and 'href="/admin/evaluations"' in section
    assert "<table" not in section and "<svg" not in section


def test_overview_and_the_api_say_how_a_set_is_handed_out_for_labelling(client, admin, researcher, db, make_user):
    from app.db.models import Job
    from tests.conftest import bearer

    ps, _ = _seed(db, make_user)
    page = client.get("/admin").text
    section = page.split(f'id="set-{ps.id}"')[1].split("</section>")[0]
    assert 'data-label-order="arrival"' in section and "no reward model has ranked this set" in section
    api = client.get(f"/api/v1/prompt-sets/{ps.id}", headers=bearer(researcher)).json()["label_order"]
    assert api == {"order": "arrival", "meaning": "oldest first", "ranked_images": 0, "images": 4, "job_id": None,
                   "reward_version_id": None, "set_at": None}

    images = db.scalars(select(Image).where(Image.prompt_set_id == ps.id).order_by(Image.id)).all()
    images[0].certainty, images[1].certainty = 900, 30
    now = utcnow()
    ranked = Job(kind="train_reward", state="succeeded", params={"prompt_set_id": ps.id, "label_order": "uncertain"},
                 result={"reward_version_id": 77}, prompt_set_id=ps.id, scope_key="r", finished_at=now)
    kept = Job(kind="train_reward", state="succeeded", params={"prompt_set_id": ps.id},  # "keep": changes nothing
               result={"reward_version_id": 78}, prompt_set_id=ps.id, scope_key="r",
               finished_at=now + timedelta(minutes=5))
    failed = Job(kind="train_reward", state="failed", params={"prompt_set_id": ps.id, "label_order": "arrival"},
                 prompt_set_id=ps.id, scope_key="r", finished_at=now + timedelta(minutes=9))  # never took effect
    db.add_all([ranked, kept, failed])
    db.commit()
    page = client.get("/admin").text
    section = page.split(f'id="set-{ps.id}"')[1].split("</section>")[0]
    assert 'data-label-order="uncertain"' in section and "least certain first" in section
    assert "reward version #77" in section and f'href="/admin/jobs/{ranked.id}"' in section
    assert figure(section, "ranked") == "2"
    api = client.get(f"/api/v1/prompt-sets/{ps.id}", headers=bearer(researcher)).json()["label_order"]
    assert (api["order"], api["job_id"], api["reward_version_id"]) == ("uncertain", ranked.id, 77)
    assert api["ranked_images"] == 2

    back = Job(kind="train_reward", state="succeeded", params={"prompt_set_id": ps.id, "label_order": "arrival"},
               result={"reward_version_id": 79}, prompt_set_id=ps.id, scope_key="r",
               finished_at=now + timedelta(hours=1))
    db.add(back)
    db.commit()
    api = client.get(f"/api/v1/prompt-sets/{ps.id}", headers=bearer(researcher)).json()["label_order"]
    assert (api["order"], api["job_id"], api["meaning"]) == ("arrival", back.id, "oldest first")
    section = client.get("/admin").text.split(f'id="set-{ps.id}"')[1].split("</section>")[0]
    assert f'set by train_reward job <a href="/admin/jobs/{back.id}">' in section
