"""Simulated raters weigh every image of a side, as a query shows the paper's 4 against 4."""

from __future__ import annotations

import random

from ml.prompts import WORLD_VOCABULARY, parse_prompt
from ml.world.raters import OracleRater
from ml.world.scene import draw, scene_for, to_pil
from workers.simulate import side_vote


def test_the_side_whose_images_follow_the_text_wins():
    rng = random.Random(0)
    prompt = "Two red boxes"
    right_scene = parse_prompt(prompt, WORLD_VOCABULARY)
    wrong_scene = parse_prompt("Three blue plates", WORLD_VOCABULARY)
    good = [to_pil(draw(scene_for(right_scene, rng))) for _ in range(4)]
    bad = [to_pil(draw(scene_for(wrong_scene, rng))) for _ in range(4)]
    rater = OracleRater(error_rate=0.0)
    assert side_vote(rater, prompt, good, bad)[0] == "left"
    assert side_vote(rater, prompt, bad, good)[0] == "right"
    # three of four right beat one of four right
    assert side_vote(rater, prompt, good[:3] + bad[:1], good[3:] + bad[1:])[0] == "left"
    # one image a side: the rater's own pair vote
    assert side_vote(rater, prompt, good[:1], bad[:1]) == rater.vote(prompt, good[0], bad[0])
