"""Helpers the job handlers share: image rows in and out of storage, PNG encoding."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Image
from app.db.session import upsert_insert
from app.storage import image_key
from workers.runtime import Runtime


def png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def store_generated(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert generated images, skipping any (job, generator, prompt, seed) already stored."""
    if not rows:
        return 0
    stmt = upsert_insert(session)(Image).values(list(rows)).on_conflict_do_nothing().returning(Image.id)
    return len(list(session.scalars(stmt)))


def image_row(rt: Runtime, *, data: bytes, prompt_id: int, prompt_set_id: int, job_id: int,
              generator_version_id: int, seed: int, settings: dict[str, Any], wanted: int) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    key = image_key(digest, "png")
    if not rt.storage.exists(key):
        rt.storage.put(key, data)
    return dict(prompt_id=prompt_id, prompt_set_id=prompt_set_id, source="generated", job_id=job_id,
                generator_version_id=generator_version_id, seed=seed, sampler=settings, storage_key=key,
                content_hash=digest, mime_type="image/png", width=int(settings.get("width", 0)),
                height=int(settings.get("height", 0)), byte_size=len(data), ratings_wanted=wanted,
                ratings_open=wanted)


def existing_keys(session: Session, job_ids: Sequence[int], generator_version_id: int) -> set[tuple[int, int | None]]:
    return set(session.execute(select(Image.prompt_id, Image.seed).where(
        Image.job_id.in_(job_ids), Image.generator_version_id == generator_version_id)).all())
