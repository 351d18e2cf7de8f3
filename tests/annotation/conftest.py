"""Fixtures for annotation tests: a prompt set with images, made through the REST API."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image as PILImage
from sqlalchemy import text

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
