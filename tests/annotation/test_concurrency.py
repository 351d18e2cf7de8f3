"""64 concurrent annotator clients over real HTTP against a real server process on Postgres.

Afterwards every image has exactly K usable labels from K distinct annotators, every pair exactly
9 votes from 9 distinct annotators, every 2xx answer is stored, and leases that annotators walked
away from did not strand anything once they expired. Gold is on (a share of each stream, and what
is left once the pool ran dry for an annotator): every annotator answered every gold item once,
and gold took no slot.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, insert, select, text

from app.auth import service as auth
from app.auth.schemas import TokenCreate
from app.auth.secrets import hash_password, new_pseudonym
from app.db.models import (
    Comparison,
    ComparisonAssignment,
    ComparisonVote,
    Image,
    Prompt,
    PromptSet,
    Rating,
    RatingAssignment,
    User,
)
from app.db.session import transaction
from tests.server import running_server

CLIENTS = 64
K = 3
N_IMAGES = 80
N_PAIRS = 24
VOTES = 9
LEASE_SECONDS = 10
N_GOLD_IMAGES, N_GOLD_PAIRS, GOLD_RATE = 4, 2, 0.2


def _seed(session_factory) -> list[str]:
    with transaction(session_factory) as s:
        ps = PromptSet(name="load", labels_per_image=K, votes_per_comparison=VOTES, lease_seconds=LEASE_SECONDS,
                       gold_rate=GOLD_RATE, auto_chain={}, source={}, purpose="training", description="")
        s.add(ps)
        s.flush()
        prompt = Prompt(prompt_set_id=ps.id, text="Two dogs", category="count", attributes={}, split="seen")
        s.add(prompt)
        s.flush()
        s.execute(insert(Image), [
            dict(prompt_id=prompt.id, prompt_set_id=ps.id, storage_key=f"images/x/{i}.png", content_hash=f"{i:064d}",
                 mime_type="image/png", width=8, height=8, byte_size=1, sampler={}, ratings_wanted=K, ratings_open=K,
                 source="uploaded", gold_label="good" if i >= N_IMAGES else None)
            for i in range(N_IMAGES + N_GOLD_IMAGES)
        ])
        ids = list(s.scalars(select(Image.id).order_by(Image.id)))
        s.execute(insert(Comparison), [
            dict(prompt_id=prompt.id, image_a_id=ids[2 * i], image_b_id=ids[2 * i + 1], votes_wanted=VOTES,
                 votes_open=VOTES, gold_alignment="a" if i >= N_PAIRS else None)
            for i in range(N_PAIRS + N_GOLD_PAIRS)
        ])
        pw = hash_password("load-test-pw")  # one hash: 64 argon2 hashes would only slow the test
        tokens = []
        for i in range(CLIENTS + 8):
            u = User(username=f"load{i}", display_name="", role="annotator", password_hash=pw,
                     pseudonym=new_pseudonym(), is_active=True, failed_login_count=0)
            s.add(u)
            s.flush()
            tokens.append(auth.create_token(s, u, TokenCreate()).token)
    return tokens


@pytest.mark.slow
@pytest.mark.parametrize("annotation_engine", ["auto", "portable"])
def test_exact_counts_under_64_concurrent_clients(annotation_engine, pg_url, session_factory, db):
    """On both Postgres engines: the hot path (with the portable route behind it) and the portable
    engine alone (T2IF_ANNOTATION_ENGINE=portable), for ratings and for comparisons."""
    tokens = _seed(session_factory)
    stored_ratings: list[tuple[int, str]] = []
    stored_votes: list[tuple[int, str, str]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def annotator(token: str, seed: int, base: str, abandon: bool) -> None:
        rng = random.Random(seed)
        h = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=h, timeout=30) as c:
            if abandon:  # take a lease of each kind and walk away
                c.get("/api/v1/rating-tasks/next")
                c.get("/api/v1/comparison-tasks/next")
                return
            for kind in rng.sample(["rating", "comparison"], 2):
                while True:
                    if kind == "rating":
                        t = c.get("/api/v1/rating-tasks/next")
                        if t.status_code == 204:
                            break
                        if t.status_code != 200:
                            errors.append(f"next {t.status_code} {t.text}")
                            return
                        aid = t.json()["assignment_id"]
                        label = rng.choice(["good", "bad", "good", "bad", "skip"])
                        body = {"assignment_id": aid, "label": label, "duration_ms": rng.randint(100, 5000)}
                        r = c.post("/api/v1/ratings", json=body)
                        if rng.random() < 0.2:  # a client retry of the same answer
                            r2 = c.post("/api/v1/ratings", json=body)
                            if r2.status_code != 200:
                                errors.append(f"retry {r2.status_code} {r2.text}")
                        if r.status_code == 201:
                            with lock:
                                stored_ratings.append((aid, label))
                        else:
                            errors.append(f"rate {r.status_code} {r.text}")
                    else:
                        t = c.get("/api/v1/comparison-tasks/next")
                        if t.status_code == 204:
                            break
                        if t.status_code != 200:
                            errors.append(f"cnext {t.status_code} {t.text}")
                            return
                        aid = t.json()["assignment_id"]
                        al, fi = rng.choice(["left", "right", "tie"]), rng.choice(["left", "right", "tie"])
                        r = c.post("/api/v1/comparison-votes", json={"assignment_id": aid, "alignment": al,
                                                                     "fidelity": fi})
                        if r.status_code == 201:
                            with lock:
                                stored_votes.append((aid, al, fi))
                        else:
                            errors.append(f"vote {r.status_code} {r.text}")

    with running_server(pg_url, workers=2, extra_env={"T2IF_LEASE_SECONDS": str(LEASE_SECONDS),
                                                     "T2IF_LEASE_SWEEP_SECONDS": "0.2",
                                                     "T2IF_ANNOTATION_ENGINE": annotation_engine,
                                                     "T2IF_COMPARISON_GOLD_RATE": str(GOLD_RATE)}) as base:
        abandoners = tokens[CLIENTS:]
        with ThreadPoolExecutor(len(abandoners)) as pool:
            list(pool.map(lambda t: annotator(t, 0, base, True), abandoners))
        started = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(lambda i: annotator(tokens[i], i, base, False), range(CLIENTS)))
        assert not errors, errors[:5]
        # walked-away leases hold a few items; once they expire the same clients finish them
        time.sleep(max(0.0, LEASE_SECONDS + 1 - (time.monotonic() - started)))
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(lambda i: annotator(tokens[i], 1000 + i, base, False), range(CLIENTS)))
        assert not errors, errors[:5]
        # with `auto` the calls went through the hot path (app/annotation/hotpath.py): its pools are
        # still open; with `portable` it never started
        db.rollback()
        hot_connections = db.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 't2if-hotpath' "
            "AND datname = current_database()")).scalar()
        assert hot_connections >= 2 if annotation_engine == "auto" else hot_connections == 0

    usable = db.execute(
        select(Rating.image_id, func.count(), func.count(func.distinct(Rating.annotator_id)))
        .join(Image, Image.id == Rating.image_id)
        .where(Rating.label != "skip", Image.gold_label.is_(None)).group_by(Rating.image_id)
    ).all()
    assert len(usable) == N_IMAGES
    assert all(n == K and distinct == K for _, n, distinct in usable)
    # skips are kept, never from an annotator who also labelled the image
    assert db.scalar(select(func.count()).select_from(Rating)) == len(stored_ratings)
    votes = db.execute(
        select(ComparisonVote.comparison_id, func.count(), func.count(func.distinct(ComparisonVote.annotator_id)))
        .join(Comparison, Comparison.id == ComparisonVote.comparison_id)
        .where(Comparison.gold_alignment.is_(None)).group_by(ComparisonVote.comparison_id)
    ).all()
    assert len(votes) == N_PAIRS and all(n == VOTES and d == VOTES for _, n, d in votes)
    # every 2xx answer is in the database, exactly as sent
    stored = dict(db.execute(select(Rating.assignment_id, Rating.label)).all())
    assert all(stored[aid] == label for aid, label in stored_ratings)
    # gold: every annotator who worked until 204 answered each gold item once, on a gold lease
    gold_ratings = db.execute(text(
        "SELECT r.annotator_id, count(*) FROM rating r JOIN image i ON i.id = r.image_id "
        "WHERE i.gold_label IS NOT NULL GROUP BY 1")).all()
    assert len(gold_ratings) == CLIENTS and all(n == N_GOLD_IMAGES for _, n in gold_ratings)
    gold_votes = db.execute(text(
        "SELECT v.annotator_id, count(*) FROM comparison_vote v JOIN comparison c ON c.id = v.comparison_id "
        "WHERE c.gold_alignment IS NOT NULL GROUP BY 1")).all()
    assert len(gold_votes) == CLIENTS and all(n == N_GOLD_PAIRS for _, n in gold_votes)
    assert db.scalar(text("SELECT count(*) FROM rating_assignment a JOIN image i ON i.id = a.image_id "
                          "WHERE (i.gold_label IS NOT NULL) <> a.is_gold")) == 0
    assert db.scalar(text("SELECT count(*) FROM comparison_assignment a JOIN comparison c ON c.id = a.comparison_id "
                          "WHERE (c.gold_alignment IS NOT NULL) <> a.is_gold")) == 0
    assert db.scalar(text("SELECT count(*) FROM image WHERE gold_label IS NOT NULL "
                          "AND ratings_open <> ratings_wanted")) == 0
    assert db.scalar(text("SELECT count(*) FROM comparison WHERE gold_alignment IS NOT NULL "
                          "AND votes_open <> votes_wanted")) == 0
    assert len(stored_votes) == N_PAIRS * VOTES + CLIENTS * N_GOLD_PAIRS
    vote_rows = {r.assignment_id: r for r in db.execute(
        select(ComparisonVote.assignment_id, ComparisonVote.alignment, ComparisonVote.fidelity,
               ComparisonAssignment.left_is_a).join(ComparisonAssignment,
                                                    ComparisonAssignment.id == ComparisonVote.assignment_id))}
    to_model = {True: {"left": "a", "right": "b", "tie": "tie"}, False: {"left": "b", "right": "a", "tie": "tie"}}
    for aid, al, fi in stored_votes:
        row = vote_rows[aid]
        assert (row.alignment, row.fidelity) == (to_model[row.left_is_a][al], to_model[row.left_is_a][fi])
    # nothing stranded: no open slots, no live lease holding an item
    assert db.scalar(select(func.sum(Image.ratings_open)).where(Image.gold_label.is_(None))) == 0
    assert db.scalar(select(func.sum(Comparison.votes_open)).where(Comparison.gold_alignment.is_(None))) == 0
    assert db.scalar(select(func.count()).select_from(RatingAssignment).where(RatingAssignment.state == "leased")) \
        <= len(tokens) - CLIENTS
