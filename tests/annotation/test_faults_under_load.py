"""Faults under load, over real HTTP on Postgres: the API killed with kill -9 mid-load and brought
back, and every database connection terminated mid-load (a Postgres restart as clients see it).

Clients behave as the pages do: an answer that got no reply (connection dropped) or a 503 is sent
again, unchanged. Afterwards every acknowledged (2xx) label is stored exactly as sent, no answer
was a 500, and once the clients finish, every image has exactly K labels from K annotators.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select, text

from app.db.models import Image, Rating
from tests.annotation.test_concurrency import LEASE_SECONDS, N_IMAGES, K, _seed
from tests.server import running_server

pytestmark = pytest.mark.slow

CLIENTS = 16
ENV = {"T2IF_LEASE_SECONDS": str(LEASE_SECONDS), "T2IF_LEASE_SWEEP_SECONDS": "0.2"}


class Clients:
    """Annotator threads that rate until nothing is left, retrying what got no answer."""

    def __init__(self, tokens: list[str], base: str) -> None:
        self.tokens, self.base = tokens, base
        self.acked: dict[int, str] = {}
        self.statuses: list[int] = []
        self.dropped = 0
        self.lock = threading.Lock()

    def _call(self, c: httpx.Client, method: str, url: str, **kw) -> httpx.Response:
        for _ in range(600):  # up to a minute of outage
            try:
                r = c.request(method, url, **kw)
            except httpx.TransportError:
                with self.lock:
                    self.dropped += 1
                time.sleep(0.1)
                continue
            with self.lock:
                self.statuses.append(r.status_code)
            if r.status_code == 503:
                time.sleep(0.1)
                continue
            return r
        raise AssertionError(f"{method} {url}: no answer for a minute")

    def annotator(self, i: int) -> None:
        rng = random.Random(i)
        with httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.tokens[i]}"},
                          timeout=15) as c:
            while True:
                t = self._call(c, "GET", "/api/v1/rating-tasks/next")
                if t.status_code == 204:
                    return
                assert t.status_code == 200, t.text
                aid = t.json()["assignment_id"]
                label = rng.choice(["good", "bad"])
                r = self._call(c, "POST", "/api/v1/ratings", json={"assignment_id": aid, "label": label})
                if r.status_code in (200, 201):
                    with self.lock:
                        self.acked[aid] = label
                elif r.status_code != 409:  # 409: the lease ran out while the server was away
                    raise AssertionError(f"rate {r.status_code} {r.text}")

    def run(self, during=None) -> None:
        with ThreadPoolExecutor(CLIENTS + 1) as pool:
            done = [pool.submit(self.annotator, i) for i in range(CLIENTS)]
            if during is not None:
                pool.submit(during).result()
            for f in done:
                f.result()


def _check(db, clients: Clients) -> None:
    db.rollback()
    assert 500 not in clients.statuses
    stored = dict(db.execute(select(Rating.assignment_id, Rating.label)).all())
    assert all(stored.get(aid) == label for aid, label in clients.acked.items())  # no acknowledged label lost
    # the pool's images (the shared seed also holds gold items, which take no slot: test_concurrency)
    usable = db.execute(select(Rating.image_id, func.count(), func.count(func.distinct(Rating.annotator_id)))
                        .join(Image, Image.id == Rating.image_id)
                        .where(Rating.label != "skip", Image.gold_label.is_(None)).group_by(Rating.image_id)).all()
    assert len(usable) == N_IMAGES and all(n == K and d == K for _, n, d in usable)


def _finish(clients: Clients) -> None:
    # leases of answers lost with the connection expire, then the same clients finish those items
    time.sleep(LEASE_SECONDS + 1)
    clients.run()


def test_kill_9_of_the_api_mid_load_loses_no_acknowledged_label(pg_url, session_factory, db):
    tokens = _seed(session_factory)
    with running_server(pg_url, workers=2, extra_env=ENV) as first:
        clients = Clients(tokens, first)
        port = int(first.rsplit(":", 1)[1])
        restarted: list = []

        def kill_and_restart() -> None:
            while len(clients.acked) < N_IMAGES // 2:
                time.sleep(0.05)
            first.kill9()
            ctx = running_server(pg_url, workers=2, extra_env=ENV, port=port)
            ctx.__enter__()
            restarted.append(ctx)

        try:
            clients.run(during=kill_and_restart)
            _finish(clients)
        finally:
            for ctx in restarted:
                ctx.__exit__(None, None, None)
    assert clients.dropped > 0  # the kill did cut requests off
    _check(db, clients)


def test_database_connections_terminated_mid_load_lose_no_acknowledged_label(pg_url, session_factory, db):
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    tokens = _seed(session_factory)
    db.commit()
    killer = create_engine(pg_url, poolclass=NullPool)
    with running_server(pg_url, workers=2, extra_env=ENV) as base:
        clients = Clients(tokens, base)

        def terminate_connections() -> None:
            while len(clients.acked) < N_IMAGES // 3:
                time.sleep(0.05)
            for _ in range(3):  # what clients see of a Postgres restart: every connection dropped
                with killer.begin() as conn:
                    conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
                time.sleep(0.3)

        clients.run(during=terminate_connections)
        _finish(clients)
    killer.dispose()
    # the test's own pooled connections were terminated too: drop them rather than reuse a dead one
    db.get_bind().dispose()
    _check(db, clients)
