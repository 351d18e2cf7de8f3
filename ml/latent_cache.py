"""The VAE's latent distribution of each training image, kept on disk across fine-tunes.

A fine-tune encodes each image with the frozen VAE once (`ml.finetune._FrozenCache` keeps the result
for the rest of the run); at paper scale (~48k images at 512 px) that first pass is a good part of an
hour on one GPU, and every later fine-tune of the same images repeated it. This cache keeps the
(mean, std) of each image by (VAE identity, image size, content hash), in a SQLite file under the
worker's model cache next to the embedding cache (`ml.embeddings.EmbeddingCache`), safe across
processes. 2 × 4 × 64 × 64 float32 per image at 512 px: 128 KB, ~6 GB for 48k images.

The VAE identity is the model folder or hub id, a hash of the VAE's config and the dtype it encodes in
(fp16 on CUDA gives other latents than fp32): a different VAE never reads another's latents.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml.sqlite_cache import SqliteCache


def vae_identity(base_model: str | Path, vae: Any, dtype: torch.dtype) -> str:
    """Names a VAE as the cache keys it: where it came from, its config and the dtype it encodes in."""
    config = json.dumps({k: v for k, v in dict(vae.config).items() if not k.startswith("_")}, sort_keys=True,
                        default=str)
    digest = hashlib.sha256(config.encode()).hexdigest()[:16]
    return f"{base_model}|vae-{digest}|{str(dtype).removeprefix('torch.')}"


def content_hash(image: Any) -> str:
    """sha256 of an image's file bytes (path, bytes or a lazy image's `read_bytes()`; a lazy image that
    knows its `sha256` is not read) or, for a PIL image, of its mode, size and pixels."""
    known = getattr(image, "sha256", None)
    if isinstance(known, str) and known:
        return known
    if not isinstance(image, bytes | str | Path) and hasattr(image, "read_bytes"):
        image = image.read_bytes()
    if isinstance(image, bytes):
        data = image
    elif isinstance(image, str | Path):
        data = Path(image).read_bytes()
    else:
        buf = io.BytesIO()
        buf.write(f"{image.mode}|{image.size}|".encode())
        buf.write(image.tobytes())
        data = buf.getvalue()
    return hashlib.sha256(data).hexdigest()


class LatentCache:
    """(mean, std) latents by (vae_id, size, content hash) in a SQLite file; safe across processes."""

    def __init__(self, path: str | Path):
        self._store = SqliteCache(
            path, "latent",
            "vae_id TEXT, size INTEGER, hash TEXT, shape TEXT, mean BLOB, std BLOB, PRIMARY KEY (vae_id, size, hash)",
            key=("vae_id", "size"),
        )
        self.path = self._store.path

    def get_many(self, vae_id: str, size: int, hashes: Sequence[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for h, shape, mean, std in self._store.select((vae_id, size), hashes, "shape, mean, std"):
            dims = tuple(json.loads(shape))
            out[h] = (
                torch.from_numpy(np.frombuffer(mean, np.float32).reshape(dims).copy()),
                torch.from_numpy(np.frombuffer(std, np.float32).reshape(dims).copy()),
            )
        return out

    def put_many(self, vae_id: str, size: int, latents: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        # float32 holds fp16 and bf16 values exactly: what is read back is what was encoded
        self._store.insert([
            (vae_id, size, h, json.dumps(list(mean.shape)),
             mean.detach().float().cpu().numpy().tobytes(), std.detach().float().cpu().numpy().tobytes())
            for h, (mean, std) in latents.items()
        ])

    def count(self) -> int:
        return self._store.count()

    def close(self) -> None:
        self._store.close()
