"""Logging with the request id on every line."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from pathlib import Path

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
ACCESS_LOGGER = "t2if.access"


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    root.setLevel(level.upper())
    if any(getattr(h, "_t2if", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler._t2if = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)


def access_log_to_file(path: str | Path) -> Path:
    """Send the per-request lines to a file of their own, whatever the root level (the demo's terminal
    stays readable while simulated raters make several requests a second)."""
    path = Path(path)
    access = logging.getLogger(ACCESS_LOGGER)
    if not any(getattr(h, "_t2if_file", None) == str(path) for h in access.handlers):
        handler = logging.FileHandler(path, encoding="utf-8")
        handler._t2if_file = str(path)  # type: ignore[attr-defined]
        handler.addFilter(RequestIdFilter())
        handler.setFormatter(logging.Formatter(FORMAT))
        access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    return path
