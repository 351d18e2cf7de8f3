"""The evaluate handler in process, on tiny models: a query shows 4 images of each model (the paper's
4 against 4, same seeds on both sides), and the best-of-n arm shows, for each baseline image, the
best by reward of n samples drawn for that image alone."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from app.db.models import Comparison, ComparisonImage, Evaluation, Image, ModelVersion, Prompt, PromptSet
from app.jobs import service as jobs


def _sides(db, evaluation_id: int) -> list[dict[str, list[Image]]]:
    out = []
    for c in db.scalars(select(Comparison).where(Comparison.evaluation_id == evaluation_id).order_by(Comparison.id)):
        rows = db.execute(select(ComparisonImage.side, Image).join(Image, Image.id == ComparisonImage.image_id)
                          .where(ComparisonImage.comparison_id == c.id).order_by(ComparisonImage.position)).all()
        sides = {s: [img for side, img in rows if side == s] for s in ("a", "b")}
        assert (c.image_a_id, c.image_b_id) == (sides["a"][0].id, sides["b"][0].id)
        out.append(sides)
    return out


def test_queries_are_four_against_four_and_best_of_n_is_per_image(db, session_factory, loop_settings, tmp_path):
    from app.jobs.dispatch import RecordingDispatcher
    from ml.embeddings import load_clip
    from ml.reward import RewardConfig, RewardMLP, RewardModel, save_reward, score
    from workers.handlers import evaluate
    from workers.handlers.embeddings import image_vectors, text_vectors
    from workers.lifecycle import run_job
    from workers.runtime import Runtime

    settings = loop_settings
    ps = PromptSet(name="ev", purpose="evaluation", labels_per_image=1)
    db.add(ps)
    db.flush()
    for i, text in enumerate(("Two dogs", "A red cup")):
        db.add(Prompt(prompt_set_id=ps.id, text=text, category="count", position=i))
    base = jobs.ensure_base_generator(db, settings)
    cand = ModelVersion(kind="generator", mode="full", name="cand", parent_id=base.id,
                        artifact_url=settings.generator_model, hyperparams={}, label_snapshot={}, metrics={},
                        code_version="")
    dim = load_clip(settings.clip_model, device="cpu").dim
    path = save_reward(RewardModel(RewardMLP(dim, dim, 16), RewardConfig(hidden=16), dim, dim), tmp_path / "rm")
    reward = ModelVersion(kind="reward", mode="mlp", name="rm", artifact_url=str(path), hyperparams={},
                          label_snapshot={}, metrics={}, code_version="")
    db.add_all([cand, reward])
    db.flush()
    job = jobs.create_job(db, settings, "evaluate", {
        "prompt_set_id": ps.id, "candidate_version_id": cand.id, "images_per_prompt": 4, "best_of_n": 3,
        "reward_version_id": reward.id, "sampler": {"steps": 2, "batch_size": 16}})
    assert job.params["images_per_side"] == 4
    db.commit()

    rt = Runtime(settings, RecordingDispatcher(), session_factory)
    assert run_job(rt, job.id, evaluate.run) == "succeeded"
    main, bon = db.scalars(select(Evaluation).where(Evaluation.job_id == job.id).order_by(Evaluation.id)).all()

    queries = _sides(db, main.id)
    assert len(queries) == 2  # one query per prompt: 4 seeds, 4 a side
    for q in queries:
        assert [i.seed for i in q["a"]] == [i.seed for i in q["b"]] == [1000, 1001, 1002, 1003]
        assert {i.generator_version_id for i in q["a"]} == {base.id}
        assert {i.generator_version_id for i in q["b"]} == {cand.id}

    model = rt.reward(reward)
    first = 1000 + evaluate.BEST_OF_N_SEED_OFFSET
    for q in _sides(db, bon.id):
        assert [i.seed for i in q["a"]] == [1000, 1001, 1002, 1003]
        prompt = db.get(Prompt, q["a"][0].prompt_id).text
        for k, shown in enumerate(q["b"]):
            group = list(db.scalars(select(Image).where(
                Image.prompt_id == shown.prompt_id, Image.generator_version_id == base.id,
                Image.seed.between(first + 3 * k, first + 3 * k + 2)).order_by(Image.seed)))
            assert len(group) == 3 and shown.id in {i.id for i in group}  # drawn for this image alone
            vecs = image_vectors(rt, [(i.content_hash, i.storage_key) for i in group])
            rewards = score(model, np.stack([vecs[i.content_hash] for i in group]),
                            np.repeat(text_vectors(rt, [prompt]), 3, axis=0))
            assert shown.id == group[int(np.argmax(rewards))].id


def test_best_in_groups_takes_each_groups_own_best():
    from workers.handlers.evaluate import best_in_groups, bon_seed_groups

    # the 4 highest rewards all lie in the first group: a global top-4 would show them all
    rewards = np.array([0.9, 0.8, 0.95, 0.85, 0.1, 0.3, 0.2, 0.0, 0.5, 0.4, 0.6, 0.05, 0.2, 0.25, 0.1, 0.15])
    assert best_in_groups(rewards, [4, 4, 4, 4]) == [2, 5, 10, 13]
    groups = bon_seed_groups(1000, [1000, 1001], 16)
    assert [len(g) for g in groups] == [16, 16] and not set(groups[0]) & set(groups[1])
    assert min(groups[0]) > 1001
