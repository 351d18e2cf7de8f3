"""Annotators page: speed, skips, gold accuracy, Krippendorff's alpha, pairwise agreement and flags."""

from __future__ import annotations

from tests.admin import factories as f
from tests.admin.html import block, figure


def _seed(db, make_user):
    a, b, c, d = (make_user("annotator", username=n) for n in ("ann", "bob", "cyd", "dee"))
    ps = f.prompt_set(db, "s", k=3)
    p = f.prompt(db, ps, "two dogs", "count")
    img = [f.image(db, p, wanted=3) for _ in range(6)]
    # the hand-worked alpha example: units [g,g] [g,b] [b,b] [g,g,b] -> alpha = 0.2
    f.rating(db, img[0], a.id, "good", duration_ms=500)
    f.rating(db, img[0], b.id, "good")
    f.rating(db, img[1], a.id, "good", duration_ms=600)
    f.rating(db, img[1], c.id, "bad")
    f.rating(db, img[2], b.id, "bad")
    f.rating(db, img[2], c.id, "bad")
    f.rating(db, img[3], a.id, "good", duration_ms=700)
    f.rating(db, img[3], b.id, "good")
    f.rating(db, img[3], c.id, "bad")
    f.rating(db, img[4], a.id, "good", duration_ms=800)  # nobody else: not pairable
    f.rating(db, img[5], b.id, "skip")  # skips never count as agreement
    f.rating(db, img[5], c.id, "skip")
    # gold: ann answers one (correctly, fast); dee answers five, two correct -> 40% < 70%
    golds = [f.image(db, p, gold="good") for _ in range(5)]
    f.rating(db, golds[0], a.id, "good", duration_ms=900)
    for i, g in enumerate(golds):
        f.rating(db, g, d.id, "good" if i < 2 else "bad", duration_ms=4000)
    db.commit()
    return a, b, c, d


def test_annotator_figures_alpha_and_flags(client, admin, db, make_user):
    _seed(db, make_user)
    page = client.get("/admin/annotators").text
    assert figure(page, "alpha") == "0.200"
    assert (figure(page, "alpha-items"), figure(page, "alpha-labels")) == ("4", "9")

    ann = block(page, "data-user", "ann")
    assert figure(ann, "labels") == "5"
    assert figure(ann, "median") == "0.70"  # 500..900 ms
    # ann vs co-raters: img0 1/1, img1 0/1, img3 1/2 -> 2 of 4 pairs on 3 images
    assert figure(ann, "agreement") == "50% 2/4 pairs on 3 images"
    assert "fast: median 0.70 s" in figure(ann, "flags")
    assert figure(ann, "gold") == "100% of 1"

    bob = block(page, "data-user", "bob")
    assert figure(bob, "skip-rate") == "25.0% of 4"
    assert figure(bob, "flags") == ""

    dee = block(page, "data-user", "dee")
    assert figure(dee, "gold") == "40% of 5"
    assert "inconsistent: gold labels 40% of 5" in figure(dee, "flags")
    assert figure(dee, "median") == "4.00"


def test_agreement_far_below_the_others_is_flagged(client, admin, db, make_user):
    x, y, z = (make_user("annotator", username=n) for n in ("xan", "yul", "zed"))
    ps = f.prompt_set(db, "s", k=3)
    p = f.prompt(db, ps, "a red car", "color")
    for _ in range(5):
        im = f.image(db, p, wanted=3)
        f.rating(db, im, x.id, "good")
        f.rating(db, im, y.id, "good")
        f.rating(db, im, z.id, "bad")
    db.commit()
    page = client.get("/admin/annotators").text
    zed = block(page, "data-user", "zed")
    assert figure(zed, "agreement") == "0% 0/10 pairs on 5 images"
    assert "inconsistent: agreement 0% vs others' median 50%" in figure(zed, "flags")
    assert figure(block(page, "data-user", "xan"), "flags") == ""


def test_researcher_sees_figures_but_no_actions(researcher_client, db, make_user):
    make_user("annotator", username="ann")
    page = researcher_client.get("/admin/annotators")
    assert page.status_code == 200
    assert 'data-user="ann"' in page.text
    assert "read-only view" in page.text
    assert "Deactivate" not in page.text and "Create user" not in page.text
    assert 'method="post" action="/admin' not in page.text


def test_sql_agreement_matches_the_reference_definition(db, make_user):
    import random

    import pytest

    from app.admin.agreement import krippendorff_alpha_nominal, pairwise_agreement
    from app.admin.annotators import agreement

    rng = random.Random(7)
    users = [make_user("annotator").id for _ in range(5)]
    ps = f.prompt_set(db, "s", k=5)
    p = f.prompt(db, ps, "a red car", "color")
    units: dict[int, dict[int, str]] = {}
    for _ in range(40):
        im = f.image(db, p, wanted=5)
        for u in rng.sample(users, rng.randint(1, 5)):
            label = rng.choice(["good", "good", "bad", "skip"])
            f.rating(db, im, u, label)
            if label != "skip":
                units.setdefault(im.id, {})[u] = label
    db.commit()
    alpha, pairwise = agreement(db)
    ref = krippendorff_alpha_nominal(list(u.values()) for u in units.values())
    assert alpha.value == pytest.approx(ref.value) and (alpha.items, alpha.labels) == (ref.items, ref.labels)
    assert pairwise == pairwise_agreement(units)


def test_reliability_from_the_newest_rater_weighted_reward_is_shown_and_an_unreliable_rater_flagged(
    client, admin, db, make_user
):
    from app.db.models import ModelVersion

    good, liar, newbie = (make_user("annotator", username=n) for n in ("gus", "lia", "neo"))

    def version(name: str, annotators: dict) -> None:
        db.add(ModelVersion(kind="reward", name=name, mode="mlp", artifact_url="file:///x",
                            metrics={"raters": {"method": "dawid-skene", "annotators": annotators}}))
        db.flush()

    version("reward old", {str(good.id): {"sensitivity": 0.5, "specificity": 0.5, "labels": 40},
                           str(newbie.id): {"sensitivity": 0.1, "specificity": 0.1, "labels": 3}})
    version("reward new", {str(good.id): {"sensitivity": 0.96, "specificity": 0.93, "labels": 120},
                           str(liar.id): {"sensitivity": 0.04, "specificity": 0.02, "labels": 110},
                           "999999": {"sensitivity": 0.9, "specificity": 0.9, "labels": 9},  # a deleted user
                           "junk": {"sensitivity": "x"}})
    db.add(ModelVersion(kind="reward", name="reward plain", mode="mlp", artifact_url="file:///y", metrics={}))
    db.commit()
    page = client.get("/admin/annotators").text
    gus, lia, neo = (block(page, "data-user", n) for n in ("gus", "lia", "neo"))
    assert figure(gus, "reliability") == "96% / 93% on 120 labels, reward new"  # the newest estimate wins
    assert figure(gus, "flags") == ""
    assert figure(lia, "reliability").startswith("4% / 2%")
    assert "unreliable: sensitivity 4% + specificity 2% - 1 = -0.94 < 0.3" in figure(lia, "flags")
    assert figure(neo, "reliability").startswith("10% / 10% on 3 labels")
    assert "unreliable" not in figure(neo, "flags")  # 3 labels are too few to judge
