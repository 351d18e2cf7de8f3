"""Fixtures for annotation tests: a prompt set with images, made through the REST API."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image as PILImage
from sqlalchemy import text

from app.annotation import hotpath
from app.metrics import annotation_requests
from tests.conftest import Account, bearer


def png_bytes(seed: int, size: int = 16, fmt: str = "PNG") -> bytes:
    """A small distinct image per seed (distinct bytes -> distinct content hash)."""
    im = PILImage.new("RGB", (size, size), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    im.putpixel((seed % size, (seed // size) % size), (255, 255, 255))
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


@dataclass
class Pool:
    prompt_set_id: int
    image_ids: list[int]
    researcher: Account


def make_pool(client, researcher: Account, *, n_images: int, k: int = 1, name: str = "pool",
              prompts: list[str] | None = None, **set_fields) -> Pool:
    prompts = prompts or ["Two dogs", "A green colored cat", "A dog in the city"]
    r = client.post("/api/v1/prompt-sets", headers=bearer(researcher),
                    json={"name": name, "prompts": prompts, "labels_per_image": k, **set_fields})
    assert r.status_code == 201, r.text
    ps = r.json()["id"]
    ids = []
    for i in range(n_images):
        r = client.post("/api/v1/images", headers=bearer(researcher),
                        files={"file": (f"{i}.png", png_bytes(i), "image/png")},
                        data={"prompt_set_id": str(ps), "prompt": prompts[i % len(prompts)]})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return Pool(ps, ids, researcher)


def expire_leases(db, table: str = "rating_assignment") -> None:
    """Move every live lease's expiry into the past (as if the annotators walked away)."""
    db.execute(text(f"UPDATE {table} SET lease_expires_at = now() - interval '1 second' WHERE state = 'leased'"))
    db.commit()


def hot_answered(app, path: str | None = None) -> int:
    """Calls the asyncpg hot path answered itself (of one path, or both)."""
    labels = {"path": path} if path else {}
    return int(annotation_requests(app.state.metrics).total(answered_by="hot_path", **labels))


def handed_to_route(app, reason: str | None = None) -> int:
    """Calls the hot path handed to the route (for one reason, or any)."""
    labels = {"reason": reason} if reason else {}
    return int(annotation_requests(app.state.metrics).total(answered_by="route", **labels))


async def _no_pool(self) -> None:
    """HotPath.start leaving the pool unstarted: every call goes on to the route."""


def use_engine(mode: str, settings, monkeypatch) -> None:
    """hot: the asyncpg hot path with the route's fast path behind it (auto, the default); fast: the
    route's fast path alone (the hot path's pool is not started); portable: the SQLAlchemy engine
    (T2IF_ANNOTATION_ENGINE=portable). Must run before the app starts (request it before `client`)."""
    if mode == "portable":
        settings.annotation_engine = "portable"
    elif mode in ("fast", "route"):
        monkeypatch.setattr(hotpath.HotPath, "start", _no_pool)
