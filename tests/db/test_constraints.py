"""The database itself refuses data that breaks the design's rules, whatever the code does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from app.db.base import utcnow
from app.db.models import (
    Comparison,
    ComparisonAssignment,
    ComparisonVote,
    Image,
    Job,
    ModelVersion,
    Prompt,
    PromptSet,
    Rating,
    RatingAssignment,
)


@pytest.fixture
def world(db, make_user):
    a1, a2 = make_user("annotator"), make_user("annotator")
    ps = PromptSet(name="set", labels_per_image=3, votes_per_comparison=9, gold_rate=0.0, lease_seconds=600,
                   auto_chain={}, source={}, purpose="training", description="")
    db.add(ps)
    db.flush()
    prompt = Prompt(prompt_set_id=ps.id, text="Two dogs", category="count", attributes={"count": 2}, split="seen")
    db.add(prompt)
    db.flush()

    def image(**kw):
        fields = dict(prompt_id=prompt.id, prompt_set_id=ps.id, storage_key="k", content_hash="h" * 64,
                      mime_type="image/png", width=8, height=8, byte_size=10, ratings_wanted=3, ratings_open=3,
                      sampler={})
        img = Image(**(fields | kw))
        db.add(img)
        db.flush()
        return img

    img1, img2 = image(), image()
    db.commit()
    return {"a1": a1, "a2": a2, "ps": ps, "prompt": prompt, "img1": img1, "img2": img2, "image": image}


def _lease(db, image_id, annotator_id):
    now = utcnow()
    a = RatingAssignment(image_id=image_id, annotator_id=annotator_id, state="leased", leased_at=now,
                         lease_expires_at=now + timedelta(minutes=10))
    db.add(a)
    db.flush()
    return a


def _refused(db, fn) -> None:
    with pytest.raises(IntegrityError):
        fn()
        db.flush()
    db.rollback()


def test_one_rating_per_annotator_per_image(db, world):
    a = _lease(db, world["img1"].id, world["a1"].id)
    db.add(Rating(assignment_id=a.id, image_id=world["img1"].id, prompt_set_id=world["ps"].id,
                  annotator_id=world["a1"].id, label="good"))
    db.commit()
    a2 = _lease(db, world["img1"].id, world["a2"].id)
    db.commit()
    # same annotator, same image, via another assignment: refused
    _refused(db, lambda: db.add(Rating(assignment_id=a2.id, image_id=world["img1"].id,
                                       prompt_set_id=world["ps"].id, annotator_id=world["a1"].id, label="bad")))
    # a second lease of the same image to the same annotator: refused
    _refused(db, lambda: _lease(db, world["img1"].id, world["a1"].id))


def test_enumerations_and_counters_are_checked(db, world):
    a = _lease(db, world["img2"].id, world["a1"].id)
    db.commit()
    _refused(db, lambda: db.add(Rating(assignment_id=a.id, image_id=world["img2"].id,
                                       prompt_set_id=world["ps"].id, annotator_id=world["a1"].id,
                                       label="great")))
    _refused(db, lambda: world["image"](ratings_open=4))  # more open slots than wanted
    _refused(db, lambda: world["image"](ratings_open=-1))
    _refused(db, lambda: world["image"](gold_label="maybe"))


def test_one_vote_per_annotator_per_comparison(db, world):
    c = Comparison(prompt_id=world["prompt"].id, image_a_id=world["img1"].id, image_b_id=world["img2"].id,
                   votes_wanted=9, votes_open=9)
    db.add(c)
    db.flush()
    now = utcnow()
    ca = ComparisonAssignment(comparison_id=c.id, annotator_id=world["a1"].id, left_is_a=True, state="leased",
                              leased_at=now, lease_expires_at=now + timedelta(minutes=10))
    db.add(ca)
    db.flush()
    db.add(ComparisonVote(assignment_id=ca.id, comparison_id=c.id, annotator_id=world["a1"].id,
                          alignment="a", fidelity="tie"))
    db.commit()
    _refused(db, lambda: db.add(ComparisonVote(assignment_id=ca.id, comparison_id=c.id,
                                               annotator_id=world["a1"].id, alignment="b", fidelity="b")))
    _refused(db, lambda: db.add(Comparison(prompt_id=world["prompt"].id, image_a_id=world["img1"].id,
                                           image_b_id=world["img1"].id, votes_wanted=9, votes_open=9)))


def test_no_two_live_jobs_of_one_kind_per_scope(db, world):
    db.add(Job(kind="train_reward", state="running", scope_key="prompt_set:1", params={}, result={}, trigger={}))
    db.commit()
    _refused(db, lambda: db.add(Job(kind="train_reward", state="queued", scope_key="prompt_set:1", params={},
                                    result={}, trigger={})))
    # a finished one does not block
    db.add(Job(kind="train_reward", state="succeeded", scope_key="prompt_set:1", params={}, result={}, trigger={}))
    db.commit()


def test_generated_images_are_unique_per_job_generator_prompt_seed(db, world):
    job = Job(kind="generate", state="running", scope_key="x", params={}, result={}, trigger={})
    base = ModelVersion(kind="generator", name="base", mode="base", artifact_url="sd", hyperparams={},
                        label_snapshot={}, metrics={})
    tuned = ModelVersion(kind="generator", name="tuned", mode="lora", artifact_url="x", hyperparams={},
                         label_snapshot={}, metrics={})
    db.add_all([job, base, tuned])
    db.flush()
    world["image"](job_id=job.id, seed=7, generator_version_id=base.id)
    world["image"](job_id=job.id, seed=7, generator_version_id=tuned.id)  # the other arm, same seed: fine
    db.commit()
    _refused(db, lambda: world["image"](job_id=job.id, seed=7, generator_version_id=base.id))
