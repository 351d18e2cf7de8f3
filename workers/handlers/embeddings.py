"""CLIP embeddings of stored images and prompts through the worker's on-disk cache."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workers.runtime import Runtime


def image_vectors(rt: Runtime, items: Sequence[tuple[str, str]], batch: int = 256) -> dict[str, np.ndarray]:
    """(content hash, storage key) pairs -> vectors by content hash. Images already embedded by this
    CLIP are never read from storage again, across jobs and retrains."""
    from ml.embeddings import embed_images

    clip, cache = rt.clip(), rt.embedding_cache()
    unique = dict(items)
    out = cache.get_many(clip.model_id, "image", list(unique))
    missing = [(h, k) for h, k in unique.items() if h not in out]
    for start in range(0, len(missing), batch):
        part = missing[start:start + batch]
        result = embed_images(clip, [rt.storage.get(k) for _, k in part], cache)
        out.update(dict(zip(result.keys, result.vectors, strict=True)))
    return out


def text_vectors(rt: Runtime, texts: Sequence[str]) -> np.ndarray:
    from ml.embeddings import embed_texts

    return embed_texts(rt.clip(), list(texts), rt.embedding_cache()).vectors
