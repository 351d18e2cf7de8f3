"""The bench's server: app.main.create_app, plus a way to read each worker's annotation counters.

uvicorn runs one app per worker process, each with its own metrics registry (app.metrics), and the
app serves no metrics page. With T2IF_BENCH_METRICS_DIR set, a worker that receives SIGUSR1 writes
its `t2if_annotation_hot_requests_total` samples (who answered each call, and why a call was handed
to the route) to DIR/<pid>.json; bench/annotate.py signals the workers around each level.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from app.main import create_app as _create_app
from app.metrics import annotation_requests


def create_app() -> Any:
    app = _create_app()
    out = os.environ.get("T2IF_BENCH_METRICS_DIR")
    if out:
        counter = annotation_requests(app.state.metrics)

        def dump(*_: Any) -> None:
            samples = [[*key, value] for key, value in counter.samples().items()]
            tmp = os.path.join(out, f".{os.getpid()}.tmp")
            with open(tmp, "w") as f:
                json.dump(samples, f)
            os.replace(tmp, os.path.join(out, f"{os.getpid()}.json"))

        signal.signal(signal.SIGUSR1, dump)
        open(os.path.join(out, f"{os.getpid()}.ready"), "w").close()  # signal me from now on
    return app
