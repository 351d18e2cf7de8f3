"""The whole service in the shapes world, driven only by simulated oracle annotators over HTTP.

A real uvicorn server, Postgres, Redis and a Celery worker process; the shipped world models.
Nine simulated raters of mixed reliability log in through the form, rate the pool until the
threshold starts reward training by itself, the chained fine-tune (world preset) and blind
evaluation follow, and the raters vote on every pair. The oracle's measurement stored on the
evaluation must cover every pair, and the raters' majority on each pair must be what the oracle
sees in the stored images. (Whether fine-tuning helps is the science test's question:
tests/ml/test_world_loop.py; a 256-image pool and 64 pairs are too small to assert it here.)"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from sqlalchemy import func, select

from app.db.models import Comparison, ComparisonVote, Image, Rating
from tests.conftest import bearer
from tests.jobs.conftest import wait_for, wait_job

pytestmark = pytest.mark.slow
SAMPLER = {"steps": 20, "guidance_scale": 3.0, "batch_size": 64}  # the world models' guidance


@pytest.fixture
def world_settings(loop_settings, tmp_path):
    from ml.world import SHIPPED_MODELS
    from ml.world.corpus import write_pretrain_folder

    pretrain = write_pretrain_folder(tmp_path / "pretrain", 300, seed=1)
    return loop_settings.model_copy(update={
        "generator_model": str(SHIPPED_MODELS / "sd"), "clip_model": str(SHIPPED_MODELS / "clip"),
        "pretrain_dir": str(pretrain)})


@pytest.fixture
def world_server(world_settings, session_factory, db):
    """The app with a real Celery dispatcher, served over real HTTP on a thread."""
    import uvicorn

    from app.jobs.dispatch import CeleryDispatcher
    from app.main import create_app

    app = create_app(world_settings, session_factory=session_factory,
                     dispatcher=CeleryDispatcher(world_settings.broker_url))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_simulated_raters_drive_the_service_to_a_better_model(world_server, world_settings, researcher, make_user,
                                                              db, tmp_path):
    import httpx

    from ml.world.raters import mixed_panel
    from tests.jobs.conftest import WorkerProcess
    from workers.simulate import SimulatedAnnotator, run_team

    worker = WorkerProcess(world_settings, tmp_path / "worker.log")
    c, h = httpx.Client(base_url=world_server, timeout=30), bearer(researcher)
    try:
        ev_set = c.post("/api/v1/prompt-sets", headers=h, json={
            "name": "world eval", "purpose": "evaluation", "votes_per_comparison": 9,
            "template": {"size": 16, "seed": 1, "vocabulary": "world"}}).json()
        train = c.post("/api/v1/prompt-sets", headers=h, json={
            "name": "world train", "labels_per_image": 1, "retrain_threshold": 200,
            "template": {"size": 16, "seed": 0, "splits": ["seen"], "vocabulary": "world"},
            "auto_chain": {
                "train_reward": {"min_labels": 50},
                "finetune": {"preset": "world", "max_steps": 50},
                # one image a side: each pair's vote majority is checked against the oracle's
                # verdict on its two images below (4-vs-4 queries: tests/jobs/test_evaluate_queries.py)
                "evaluate": {"prompt_set_id": ev_set["id"], "images_per_prompt": 4, "images_per_side": 1,
                             "sampler": SAMPLER}}}).json()
        gen = c.post("/api/v1/jobs", headers=h, json={"kind": "generate", "params": {
            "prompt_set_id": train["id"], "images_per_prompt": 16, "sampler": SAMPLER}})
        assert gen.status_code == 202, gen.text
        assert wait_job(c, researcher, gen.json()["id"])["state"] == "succeeded"

        # half the team logs in through the form; the other half uses tokens made for it
        # a crowd of mixed reliability (t2i-feedback simulate-raters --panel mixed): one adversarial,
        # one lenient, three noisy (25% wrong), four accurate
        accounts = [make_user("annotator") for _ in range(9)]
        crowd = mixed_panel(9, seed=0)
        team = [SimulatedAnnotator(world_server, a.username, password=a.password if i % 2 else None,
                                   token=None if i % 2 else a.token, error_rate=r.error_rate, good_bias=r.good_bias,
                                   seed=i)
                for i, (a, r) in enumerate(zip(accounts, crowd, strict=True))]
        threads, stop = run_team(team, idle_wait=1.0)

        def jobs_of(kind):
            return c.get("/api/v1/jobs", headers=h, params={"kind": kind}).json()

        ev_job = wait_for(lambda: jobs_of("evaluate"), timeout=600, what="the chained evaluation")[0]
        ev_done = wait_job(c, researcher, ev_job["id"], timeout=300)
        assert ev_done["state"] == "succeeded", ev_done
        ev_id = ev_done["result"]["evaluation_ids"][0]

        def complete():
            r = c.get(f"/api/v1/evaluations/{ev_id}", headers=h).json()
            return r if r["comparisons"] and r["complete"] == r["comparisons"] else None

        result = wait_for(complete, timeout=300, what="9 votes on every pair")
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        worker.stop()
        c.close()

    # every rule held for simulated people: one label per image, nine distinct voters per pair
    per_image = db.execute(select(Rating.image_id, func.count()).group_by(Rating.image_id)).all()
    assert per_image and all(n == 1 for _, n in per_image)
    voters = db.execute(select(ComparisonVote.comparison_id, func.count(func.distinct(ComparisonVote.annotator_id)),
                               func.count()).group_by(ComparisonVote.comparison_id)).all()
    assert len(voters) == db.scalar(select(func.count()).select_from(Comparison).where(
        Comparison.evaluation_id == ev_id)) == 64
    assert all(d == n == 9 for _, d, n in voters)
    assert sum(a.stats.flipped for a in team) > 0  # the raters did make mistakes
    # each rater answered through the API as its kind does: the adversary is always wrong, the accurate
    # ones rarely (the rating share each got depends on timing; kinds with few ratings are not judged)
    wrong = {r.name.split("-")[0]: [0, 0] for r in crowd}
    for a, r in zip(team, crowd, strict=True):
        wrong[r.name.split("-")[0]][0] += a.stats.wrong_ratings
        wrong[r.name.split("-")[0]][1] += a.stats.ratings
    assert wrong["accurate"][1] >= 20 and wrong["accurate"][0] <= 0.1 * wrong["accurate"][1], wrong
    if wrong["adversarial"][1] >= 5:
        assert wrong["adversarial"][0] == wrong["adversarial"][1], wrong
    assert sum(a.stats.errors for a in team) == 0
    assert db.scalar(select(func.count()).select_from(Image).where(Image.prompt_set_id == train["id"])) == 256

    # the oracle judged both sides of the same 64 pairs, and said what it means
    oracle = result["oracle"]
    assert oracle["gain"]["n"] == 64 and oracle["baseline"]["aligned"]["n"] == oracle["candidate"]["aligned"]["n"] == 64
    assert "oracle finds" in oracle["sentence"] and f"{oracle['gain']['points']:+.1f} points" in oracle["sentence"]

    # what nine simulated people said through the API is what the oracle sees in the stored images:
    # the majority of each pair's alignment votes matches the oracle's own answer on that pair
    from collections import Counter

    from app.db.models import Prompt
    from app.storage import storage_for
    from ml.world.raters import OracleRater

    store, truth = storage_for(world_settings.storage_url), OracleRater(error_rate=0.0)
    keys = dict(db.execute(select(Image.id, Image.storage_key)).all())
    agree = 0
    pairs = db.execute(select(Comparison.id, Comparison.image_a_id, Comparison.image_b_id, Prompt.text)
                       .join(Prompt, Prompt.id == Comparison.prompt_id)
                       .where(Comparison.evaluation_id == ev_id)).all()
    for cid, a, b, text in pairs:
        votes = Counter(db.scalars(select(ComparisonVote.alignment).where(ComparisonVote.comparison_id == cid)))
        majority = votes.most_common(1)[0][0]
        left, _ = truth.vote(text, store.get(keys[a]), store.get(keys[b]))
        agree += majority == {"left": "a", "right": "b", "tie": "tie"}[left]
    assert agree >= 0.85 * len(pairs), (agree, len(pairs))
    overall = next(g for g in result["results"] if g["group"] == "all")["alignment"]
    assert overall["win"]["count"] + overall["loss"]["count"] + overall["tie"]["count"] == 64
