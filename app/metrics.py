"""Process metrics in Prometheus' data model: named counters with labels, one registry per app.

The app keeps its registry on `app.state.metrics`; tests and operators read what the process did
from it (for example which annotation requests the asyncpg hot path answered and which it handed
to the route, and why) instead of from switches or counters inside the code that does the work.
"""

from __future__ import annotations

import threading


class Counter:
    """A monotonically increasing count per combination of label values."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(labels[n] for n in self.labelnames)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def samples(self) -> dict[tuple[str, ...], float]:
        with self._lock:
            return dict(self._values)

    def total(self, **labels: str) -> float:
        """The sum over every sample whose labels include these values (all samples: no labels)."""
        idx = [(self.labelnames.index(n), v) for n, v in labels.items()]
        return sum(value for key, value in self.samples().items() if all(key[i] == v for i, v in idx))


class Registry:
    def __init__(self) -> None:
        self.counters: dict[str, Counter] = {}

    def counter(self, name: str, documentation: str, labelnames: tuple[str, ...] = ()) -> Counter:
        """The counter of this name, created on first use."""
        if name not in self.counters:
            self.counters[name] = Counter(name, documentation, labelnames)
        return self.counters[name]


ANNOTATION_REQUESTS = "t2if_annotation_hot_requests_total"


def annotation_requests(registry: Registry) -> Counter:
    """The annotation loop's two calls (`path`) on Postgres: answered by the asyncpg hot path
    (`answered_by="hot_path"`) or handed to the FastAPI route (`answered_by="route"`, with `reason`)."""
    return registry.counter(ANNOTATION_REQUESTS, "annotation loop calls by who answered them",
                            ("path", "answered_by", "reason"))
