"""Simulated annotators: oracle raters that use the service the way a person does, over HTTP.

Each one logs in through the `/login` form, mints itself an API token (`POST /api/v1/tokens`), then
takes rating tasks and comparison tasks from the REST API, downloads each image, asks the world
oracle (`ml.world.raters.OracleRater`, with the chosen error rate) and submits the answer. Nothing is
written to the database any other way, so every rule of the service (leases, exactly K labels,
exactly N distinct voters, auto-retrain, chained fine-tuning and evaluation) runs as it would for
people. Used by `t2i-feedback simulate-raters` and by the demo.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("t2if.simulate")
_LOGIN_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_PAGE_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


class SimulationError(RuntimeError):
    """The service refused something a well-behaved annotator does (log-in, token, a task)."""


@dataclass
class RaterStats:
    ratings: int = 0
    votes: int = 0
    errors: int = 0  # requests the service refused (each logged)
    flipped: int = 0  # answers the rater got wrong on purpose (its error rate)
    wrong_ratings: int = 0  # ratings that are not the oracle's verdict (flips and lenient "good"s)


@dataclass
class SimulatedAnnotator:
    base_url: str
    username: str
    password: str | None = None
    token: str | None = None
    error_rate: float = 0.0
    seed: int = 0
    good_bias: float = 0.0  # share of images called good whatever they show (a lenient rater)
    pace: float = 0.0  # seconds between answers (0: as fast as the service answers)
    ratings: bool = True
    comparisons: bool = True
    stats: RaterStats = field(default_factory=RaterStats)

    def __post_init__(self) -> None:
        from ml.world.raters import OracleRater

        self.rater = OracleRater(self.error_rate, seed=self.seed, good_bias=self.good_bias)
        self.http = httpx.Client(base_url=self.base_url.rstrip("/"), timeout=60.0, follow_redirects=False)

    # ---- identity -------------------------------------------------------------------------------

    def log_in(self) -> None:
        """Log in through the form, then mint a bearer token and forget the browser session."""
        if self.token:
            self.http.headers["authorization"] = f"Bearer {self.token}"
            return
        if not self.password:
            raise SimulationError(f"{self.username}: needs a password or a token")
        page = self.http.get("/login")
        m = _LOGIN_CSRF.search(page.text)
        if not m:
            raise SimulationError(f"/login answered {page.status_code} without a log-in form")
        r = self.http.post("/login", data={"username": self.username, "password": self.password,
                                           "csrf_token": m.group(1), "next": "/"})
        if r.status_code != 303:
            raise SimulationError(f"{self.username}: log-in refused ({r.status_code})")
        home = self.http.get("/")
        m = _PAGE_CSRF.search(home.text)
        if not m:
            raise SimulationError(f"{self.username}: no CSRF token on the home page after log-in")
        r = self.http.post("/api/v1/tokens", json={"name": "simulated annotator"},
                           headers={"x-csrf-token": m.group(1)})
        if r.status_code != 201:
            raise SimulationError(f"{self.username}: could not create a token ({r.status_code}: {r.text[:200]})")
        self.token = r.json()["token"]
        self.http.cookies.clear()
        self.http.headers["authorization"] = f"Bearer {self.token}"

    # ---- work -----------------------------------------------------------------------------------

    def _image(self, url: str) -> bytes:
        r = self.http.get(url)
        if r.status_code != 200:
            raise SimulationError(f"image {url}: {r.status_code}")
        return r.content

    def _next(self, kind: str) -> dict[str, Any] | None:
        """The next task of `kind` ('rating-tasks' or 'comparison-tasks'); None when there is none."""
        r = self.http.get(f"/api/v1/{kind}/next")
        if r.status_code == 204:
            return None
        if r.status_code != 200:
            raise SimulationError(f"{kind}/next: {r.status_code} {r.text[:200]}")
        return r.json()  # type: ignore[no-any-return]

    def rate_one(self) -> bool:
        """Take one rating task and answer it; False when the service has none for this annotator."""
        task = self._next("rating-tasks")
        if task is None:
            return False
        flipped = self.rater.flipped
        aligned = self.rater.judge([self._image(task["image_url"])], [task["prompt"]])[0].aligned
        label = self.rater.answer([aligned])[0]
        self.stats.flipped += self.rater.flipped - flipped
        self.stats.wrong_ratings += (label == "good") != aligned
        s = self.http.post("/api/v1/ratings", json={"assignment_id": task["assignment_id"], "label": label,
                                                    "duration_ms": 1000})
        if s.status_code not in (200, 201):
            self.stats.errors += 1
            log.warning("%s: rating %s refused: %s %s", self.username, task["assignment_id"], s.status_code,
                        s.text[:200])
            return True
        self.stats.ratings += 1
        return True

    def vote_one(self) -> bool:
        """Take one comparison and vote; False when there is none for this annotator."""
        task = self._next("comparison-tasks")
        if task is None:
            return False
        flipped = self.rater.flipped
        alignment, fidelity = side_vote(self.rater, task["prompt"],
                                        [self._image(u) for u in _urls(task["left"])],
                                        [self._image(u) for u in _urls(task["right"])])
        self.stats.flipped += self.rater.flipped - flipped
        s = self.http.post("/api/v1/comparison-votes", json={"assignment_id": task["assignment_id"],
                                                              "alignment": alignment, "fidelity": fidelity})
        if s.status_code not in (200, 201):
            self.stats.errors += 1
            log.warning("%s: vote %s refused: %s %s", self.username, task["assignment_id"], s.status_code,
                        s.text[:200])
            return True
        self.stats.votes += 1
        return True

    def step(self) -> bool:
        """One answer of either kind (comparisons first: they block an evaluation); False if idle."""
        if self.comparisons and self.vote_one():
            return True
        return self.ratings and self.rate_one()

    def run(self, stop: threading.Event, idle_wait: float = 2.0, max_answers: int | None = None,
            until_idle: float | None = None) -> RaterStats:
        """Answer until `stop` is set, `max_answers` are given, or nothing came for `until_idle` seconds."""
        self.log_in()
        idle_since: float | None = None
        while not stop.is_set():
            if max_answers is not None and self.stats.ratings + self.stats.votes >= max_answers:
                break
            try:
                busy = self.step()
            except (httpx.HTTPError, SimulationError) as exc:
                self.stats.errors += 1
                log.warning("%s: %s", self.username, exc)
                busy = False
            if busy:
                idle_since = None
                if self.pace:
                    stop.wait(self.pace)
                continue
            now = time.monotonic()
            idle_since = idle_since or now
            if until_idle is not None and now - idle_since >= until_idle:
                break
            stop.wait(idle_wait)
        self.http.close()
        return self.stats


def run_team(annotators: Sequence[SimulatedAnnotator], stop: threading.Event | None = None,
             **run_kwargs: Any) -> tuple[list[threading.Thread], threading.Event]:
    """Start one thread per annotator; returns the threads and the event that stops them."""
    stop = stop or threading.Event()
    threads = []
    for a in annotators:
        t = threading.Thread(target=_run_logged, args=(a, stop, run_kwargs), name=f"rater-{a.username}", daemon=True)
        t.start()
        threads.append(t)
    return threads, stop


def _run_logged(a: SimulatedAnnotator, stop: threading.Event, kwargs: dict[str, Any]) -> None:
    try:
        a.run(stop, **kwargs)
    except Exception:
        log.exception("simulated annotator %s stopped", a.username)


def _urls(side: dict[str, Any]) -> list[str]:
    return list(side.get("image_urls") or [side["image_url"]])


def side_vote(rater: Any, prompt: str, left: list[Any], right: list[Any]) -> tuple[str, str]:
    """The oracle rater's answer for a query of several images a side (the paper's 4 against 4), as a
    person would weigh them: the side more of whose images follow the text (then the higher mean share
    of checks passed), and the side that looks better on average; one image a side is the rater's own
    vote. The rater's error rate applies to each answer as for one pair."""
    from ml.world.raters import QUALITY_TIE

    if len(left) == 1 and len(right) == 1:
        return rater.vote(prompt, left[0], right[0])  # type: ignore[no-any-return]
    verdicts = rater.judge(left + right, [prompt] * (len(left) + len(right)))
    a, b = verdicts[: len(left)], verdicts[len(left):]

    def align(vs: list[Any]) -> tuple[float, float]:
        return (sum(v.aligned for v in vs) / len(vs),
                sum(sum(v.checks.values()) / len(v.checks) for v in vs) / len(vs))

    sa, sb = align(a), align(b)
    alignment = "tie" if sa == sb else ("left" if sa > sb else "right")
    d = sum(v.quality for v in a) / len(a) - sum(v.quality for v in b) / len(b)
    fidelity = "tie" if abs(d) < QUALITY_TIE else ("left" if d > 0 else "right")
    return rater._maybe_flip(alignment), rater._maybe_flip(fidelity)
