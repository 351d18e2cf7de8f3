"""The shapes world without models: renderer, oracle, corpus noise, oracle raters and measurements."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from ml.prompts import WORLD_VOCABULARY, all_prompts, make_prompt, parse_prompt
from ml.world.corpus import CLEAN, CaptionNoise, caption, corpus
from ml.world.measure import compare, paired_gain, se_clustered, verdict_sentence
from ml.world.oracle import as_pixels, detect, judge
from ml.world.raters import OracleRater
from ml.world.scene import BACKGROUND_RGB, COLOR_RGB, GLYPHS, SIZE, Scene, draw, place, random_scene, scene_for

PROMPTS = [p for ps in all_prompts(WORLD_VOCABULARY).values() for p in ps]


def test_every_world_prompt_is_a_paper_prompt_with_the_same_attributes():
    for p in PROMPTS:
        assert parse_prompt(p.text) == p  # one grammar: the service parses world prompts unchanged
    cats = Counter(p.category for p in PROMPTS)
    assert cats == {"count": 20, "color": 30, "background": 20, "combination": 800}
    assert {p.object for p in PROMPTS if p.split == "unseen"} == {"rose"}


def test_oracle_reads_back_every_rendered_scene():
    rng = random.Random(0)
    sample = rng.sample(PROMPTS, 300)
    verdicts = judge([draw(scene_for(p, rng)) for p in sample], [p.text for p in sample])
    assert all(v.aligned for v in verdicts), [v for v in verdicts if not v.aligned][:3]
    assert min(v.quality for v in verdicts) == pytest.approx(1.0)


@pytest.mark.parametrize("attribute", ["count", "color", "background", "object"])
def test_oracle_catches_each_wrong_attribute(attribute):
    rng = random.Random(1)
    caught = 0
    for _ in range(40):
        scene = random_scene(rng)
        prompt = make_prompt(scene.object, scene.count, scene.color, scene.background, WORLD_VOCABULARY)
        choices = {"count": WORLD_VOCABULARY.counts, "color": WORLD_VOCABULARY.colors,
                   "background": WORLD_VOCABULARY.backgrounds, "object": WORLD_VOCABULARY.objects}[attribute]
        wrong = rng.choice([c for c in choices if c != getattr(scene, attribute)])
        shown = replace(scene, **{attribute: wrong})
        if attribute == "count":
            shown = replace(shown, positions=place(wrong, rng))
        v = judge([draw(shown)], [prompt.text])[0]
        assert not v.aligned
        assert v.checks[attribute] is False
        assert all(ok for a, ok in v.checks.items() if a != attribute)
        caught += 1
    assert caught == 40


def test_a_prompt_without_a_number_means_one():
    scene = Scene("box", 2, "red", "sea", place(2, random.Random(0)))
    v = judge([draw(scene)], ["A red box in the sea"])[0]
    assert v.checks == {"object": True, "count": False, "color": True, "background": True}
    assert judge([draw(scene)], ["Two red boxes in the sea"])[0].aligned


def test_stray_marks_lower_quality_but_are_not_objects():
    scene = Scene("plate", 1, "blue", "desert", place(1, random.Random(2)))
    px = draw(scene)
    clean = judge([px], ["A blue plate"])[0]
    px = px.copy()
    free = np.argwhere((px == BACKGROUND_RGB["desert"]).all(-1))
    r, c = free[len(free) // 2]
    px[r, c] = COLOR_RGB["red"]  # a one-pixel speck
    specked = judge([px], ["A blue plate"])[0]
    assert specked.aligned and specked.detected.count == 1 and specked.detected.stray_pixels == 1
    assert specked.quality < clean.quality


def test_oracle_refuses_what_it_cannot_judge():
    with pytest.raises(ValueError, match="not a prompt of the shapes world"):
        judge([np.zeros((SIZE, SIZE, 3), np.uint8)], ["Two dogs in San Francisco"])
    with pytest.raises(ValueError, match="expected a 32x32 RGB image"):
        as_pixels(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        judge([np.zeros((SIZE, SIZE, 3), np.uint8)] * 2, ["A red box"])


def test_oracle_accepts_encoded_images():
    import io

    from ml.world.scene import to_pil

    scene = Scene("tree", 3, "white", "moon", place(3, random.Random(3)))
    buf = io.BytesIO()
    to_pil(draw(scene)).save(buf, "PNG")
    assert judge([buf.getvalue()], ["Three white trees on the moon"])[0].aligned
    big = to_pil(draw(scene)).resize((128, 128), 0)  # larger images are scaled down first
    assert detect([big])[0].count == 3


def test_glyphs_are_told_apart():
    names = list(GLYPHS)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            inter = (GLYPHS[a] & GLYPHS[b]).sum()
            union = (GLYPHS[a] | GLYPHS[b]).sum()
            assert inter / union < 0.85, (a, b)


def test_clean_captions_are_true_and_noisy_ones_wrong_as_designed():
    rng = random.Random(4)
    scenes = [random_scene(rng) for _ in range(4000)]
    clean = [caption(s, CLEAN, rng) for s in scenes]
    probe = [(s, c) for s, c in zip(scenes[:500], clean[:500], strict=True) if parse_prompt(c, WORLD_VOCABULARY)]
    assert len(probe) > 400  # "A plate" names no attribute: not a probe prompt
    assert all(v.aligned for v in judge([draw(s) for s, _ in probe], [c for _, c in probe]))
    noise = CaptionNoise()
    noisy = [parse_prompt(caption(s, noise, rng), WORLD_VOCABULARY) or make_prompt(s.object, None, None, "moon")
             for s in scenes]
    red = [p.color for s, p in zip(scenes, noisy, strict=True) if s.color == "red" and p.color]
    assert 0.4 < red.count("yellow") / len(red) < 0.6  # a swapped pair: half the time
    white = [p.color for s, p in zip(scenes, noisy, strict=True) if s.color == "white" and p.color]
    assert set(white) == {"white"}  # colours outside the pairs are always right
    three = Counter(p.count for s, p in zip(scenes, noisy, strict=True) if s.count == 3)
    assert all(0.25 < three[n] / sum(three.values()) < 0.42 for n in (2, 3, 4))  # the word says nothing
    assert all(p.count in (None, 1) for s, p in zip(scenes, noisy, strict=True) if s.count == 1)


def test_corpus_is_seeded():
    assert corpus(50, seed=3) == corpus(50, seed=3)
    assert corpus(50, seed=3) != corpus(50, seed=4)


def test_oracle_raters_err_at_their_rate():
    rng = random.Random(5)
    sample = rng.sample(PROMPTS, 200)
    images = [draw(scene_for(p, rng)) for p in sample]
    assert OracleRater(0.0).label_many(images, [p.text for p in sample]) == ["good"] * 200
    noisy = OracleRater(0.25, seed=1)
    labels = noisy.label_many(images, [p.text for p in sample])
    assert labels.count("bad") == noisy.flipped
    assert 0.17 < noisy.flipped / 200 < 0.33
    with pytest.raises(ValueError):
        OracleRater(1.5)


def test_oracle_rater_votes_for_the_image_that_shows_the_prompt():
    rng = random.Random(6)
    rater = OracleRater(0.0)
    good = draw(Scene("donut", 2, "green", "forest", place(2, rng)))
    bad = draw(Scene("donut", 3, "green", "forest", place(3, rng)))
    assert rater.vote("Two green donuts in the forest", good, bad)[0] == "left"
    assert rater.vote("Two green donuts in the forest", bad, good)[0] == "right"
    assert rater.vote("Two green donuts in the forest", good, good) == ("tie", "tie")


def test_standard_errors_by_hand():
    values = np.array([1, 0, 1, 1, 0, 0], float)
    groups = ["a", "a", "b", "b", "c", "c"]
    means = np.array([0.5, 1.0, 0.0])
    assert se_clustered(values, groups) == pytest.approx(means.std(ddof=1) / np.sqrt(3))
    assert np.isnan(se_clustered(values, ["a"] * 6))


def test_compare_pairs_images_and_says_what_it_means():
    rng = random.Random(7)
    prompts = rng.sample([p for p in PROMPTS if p.category != "combination"], 40)
    right = [draw(scene_for(p, rng)) for p in prompts]
    wrong = [draw(replace(scene_for(p, rng), background=rng.choice(
        [b for b in WORLD_VOCABULARY.backgrounds if b != p.background]))) if p.background else
        draw(replace(scene_for(p, rng), object="box" if p.object != "box" else "tree")) for p in prompts]
    out = compare(wrong, right, [p.text for p in prompts])
    assert out["baseline"]["aligned"]["rate"] == 0.0 and out["candidate"]["aligned"]["rate"] == 1.0
    assert out["gain"]["points"] == pytest.approx(100.0)
    assert set(out["gain_by_group"]) == {p.category for p in prompts} | {p.split for p in prompts}
    sentence = verdict_sentence({"points": 30.0, "z": 6.0, "se": 5.0}, 0.4, 0.7)
    assert "70%" in sentence and "40%" in sentence and "better" in sentence
    assert "within noise" in verdict_sentence({"points": 2.0, "z": 0.5, "se": 4.0}, 0.4, 0.42)
    v = judge(right[:2], [p.text for p in prompts[:2]])
    assert paired_gain(v, v, prompts[:2])["points"] == 0.0


def test_arm_metrics_split_the_seen_prompts_into_trained_and_new():
    from ml.world.measure import arm_metrics

    rng = random.Random(3)
    seen = [p for p in PROMPTS if p.split == "seen" and p.category != "combination"][:6]
    unseen = [p for p in PROMPTS if p.split == "unseen"][:2]
    prompts = seen + unseen
    trained = {p.text for p in seen[:2]}
    # the trained prompts drawn right, the new seen ones wrong, the unseen ones right
    images = [draw(scene_for(p, rng)) if p.text in trained or p.split == "unseen"
              else draw(replace(scene_for(p, rng), object="box" if p.object != "box" else "tree")) for p in prompts]
    m = arm_metrics(prompts, judge(images, [p.text for p in prompts]), trained=trained)
    assert m["by_training"]["trained"]["rate"] == 1.0 and m["by_training"]["trained"]["n"] == 2
    assert m["by_training"]["new_seen"]["rate"] == 0.0 and m["by_training"]["new_seen"]["n"] == 4
    assert m["by_split"]["unseen"]["rate"] == 1.0
    assert "by_training" not in arm_metrics(prompts, judge(images, [p.text for p in prompts]))
