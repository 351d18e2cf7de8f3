"""CLIP image and text embeddings, L2-normalised, with a disk cache.

CLIP stays frozen in the method, so an image or prompt is embedded once per CLIP model and reused
by every reward retrain. The cache is one SQLite file (WAL mode): several worker processes can read
and write it at once, and a crash mid-write leaves no torn entries. Keys are
`(model_id, kind, sha256 of the content)`: image file bytes, or the prompt text.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml.sqlite_cache import SqliteCache

ImageInput = Any  # PIL.Image.Image | bytes | str | Path


def image_bytes(image: ImageInput) -> bytes:
    """The bytes an image is identified by: the file's bytes, or its PNG encoding for PIL images."""
    if isinstance(image, bytes):
        return image
    if isinstance(image, str | Path):
        return Path(image).read_bytes()
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def content_hash(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


class EmbeddingCache:
    """Vectors by (model_id, kind, content hash) in a SQLite file; safe across processes."""

    def __init__(self, path: str | Path):
        self._store = SqliteCache(
            path, "embedding",
            "model_id TEXT, kind TEXT, hash TEXT, dim INTEGER, vector BLOB, PRIMARY KEY (model_id, kind, hash)",
            key=("model_id", "kind"),
        )
        self.path = self._store.path

    def get_many(self, model_id: str, kind: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        rows = self._store.select((model_id, kind), hashes, "vector")
        return {h: np.frombuffer(v, dtype=np.float32) for h, v in rows}

    def put_many(self, model_id: str, kind: str, vectors: dict[str, np.ndarray]) -> None:
        self._store.insert([
            (model_id, kind, h, v.shape[-1], np.asarray(v, np.float32).tobytes()) for h, v in vectors.items()
        ])

    def count(self) -> int:
        return self._store.count()

    def close(self) -> None:
        self._store.close()


@dataclass
class Clip:
    """A loaded CLIP model; load once per process with `load_clip` and reuse."""

    model: Any
    tokenizer: Any
    image_processor: Any
    model_id: str
    device: str
    dim: int


def load_clip(model: str | Path, device: str | None = None, model_id: str | None = None) -> Clip:
    """Load CLIP from a folder or hub id (e.g. `openai/clip-vit-large-patch14`). `model_id` names the
    model in the cache (default: the path or id as given)."""
    from transformers import AutoImageProcessor, CLIPModel, CLIPTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    loaded = CLIPModel.from_pretrained(str(model), dtype=dtype)
    dim = loaded.config.projection_dim
    if dim is None:  # CLIPModel cannot even be built without it; only a broken config gets here
        raise ValueError(f"{model}: the CLIP config has no projection_dim")
    # PreTrainedModel.to is wrapped with functools.wraps, which mypy reads as a function still wanting
    # `self`; calling it through the nn.Module type runs the same method.
    module: torch.nn.Module = loaded
    clip = module.to(device).eval()
    return Clip(
        model=clip,
        tokenizer=CLIPTokenizer.from_pretrained(str(model)),
        image_processor=AutoImageProcessor.from_pretrained(str(model)),
        model_id=model_id or str(model),
        device=device,
        dim=dim,
    )


@dataclass
class EmbeddingConfig:
    batch_size: int = field(default=32, metadata={"help": "items per CLIP forward pass"})


@dataclass
class EmbeddingResult:
    vectors: np.ndarray  # (n, dim) float32, unit norm, in input order
    keys: list[str]  # content hash of each input
    computed: int  # how many unique items went through CLIP (the rest came from the cache)


def _normalise(x: torch.Tensor) -> np.ndarray:
    x = x.float()
    return (x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()


def _embed(
    keys: list[str],
    items: list[Any],
    kind: str,
    clip: Clip,
    forward: Callable[[list[Any]], torch.Tensor],
    cache: EmbeddingCache | None,
    config: EmbeddingConfig,
    progress: Callable[[int, int], None] | None,
) -> EmbeddingResult:
    found = cache.get_many(clip.model_id, kind, keys) if cache else {}
    todo = {k: it for k, it in zip(keys, items, strict=True) if k not in found}
    todo_keys = list(todo)
    for start in range(0, len(todo_keys), config.batch_size):
        chunk = todo_keys[start : start + config.batch_size]
        with torch.inference_mode():
            vecs = _normalise(forward([todo[k] for k in chunk]))
        new = dict(zip(chunk, vecs, strict=True))
        found.update(new)
        if cache:
            cache.put_many(clip.model_id, kind, new)
        if progress:
            progress(start + len(chunk), len(todo_keys))
    vectors = np.stack([found[k] for k in keys]) if keys else np.zeros((0, clip.dim), np.float32)
    return EmbeddingResult(vectors=vectors.astype(np.float32), keys=keys, computed=len(todo_keys))


def embed_images(
    clip: Clip,
    images: Sequence[ImageInput],
    cache: EmbeddingCache | None = None,
    config: EmbeddingConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EmbeddingResult:
    """Image embeddings for PIL images, file paths or encoded bytes."""
    from PIL import Image

    raw = [image_bytes(im) for im in images]

    def forward(batch: list[bytes]) -> torch.Tensor:
        pil = [Image.open(io.BytesIO(b)).convert("RGB") for b in batch]
        pixels = clip.image_processor(images=pil, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(clip.device, clip.model.dtype)
        return clip.model.get_image_features(pixel_values=pixels).pooler_output

    keys = [content_hash(b) for b in raw]
    return _embed(keys, raw, "image", clip, forward, cache, config or EmbeddingConfig(), progress)


def embed_texts(
    clip: Clip,
    texts: Sequence[str],
    cache: EmbeddingCache | None = None,
    config: EmbeddingConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EmbeddingResult:
    """Text embeddings of prompts (truncated to CLIP's 77 tokens)."""

    def forward(batch: list[str]) -> torch.Tensor:
        tok = clip.tokenizer(batch, padding=True, truncation=True, max_length=77, return_tensors="pt")
        tok = {k: v.to(clip.device) for k, v in tok.items()}
        return clip.model.get_text_features(**tok).pooler_output

    keys = [content_hash(t) for t in texts]
    return _embed(keys, list(texts), "text", clip, forward, cache, config or EmbeddingConfig(), progress)


def clip_score(image_vectors: np.ndarray, text_vectors: np.ndarray) -> np.ndarray:
    """The CLIP-score baseline: row-wise cosine similarity of image and text embeddings."""
    a = image_vectors / np.linalg.norm(image_vectors, axis=-1, keepdims=True).clip(1e-12)
    b = text_vectors / np.linalg.norm(text_vectors, axis=-1, keepdims=True).clip(1e-12)
    return (a * b).sum(-1)
