from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class ImageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    prompt_id: int
    prompt_set_id: int
    source: str
    generator_version_id: int | None
    seed: int | None
    sampler: dict[str, Any]
    content_hash: str
    mime_type: str
    width: int
    height: int
    byte_size: int
    ratings_wanted: int
    ratings_open: int
    created_at: datetime
    gold_label: str | None = None
    image_url: str = ""


class ImageGoldUpdate(BaseModel):
    gold_label: Literal["good", "bad"] | None
