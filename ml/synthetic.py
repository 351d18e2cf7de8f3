"""Synthetic labelled embeddings with a learnable rule, for tests and benchmarks.

Each attribute value (colour, count, background, object) has a random text direction; an "image"
is the sum of the directions of the attributes it actually shows, in an image space that shares
the text directions for colour/object/background but NOT for counts (like CLIP, which counts
poorly). A bad image shows one attribute different from its prompt. So the rule "good iff the image
shows what the prompt says" is learnable by the reward MLP, and cosine similarity (the CLIP-score
baseline) misses the count errors.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ml.prompts import PAPER_VOCABULARY, Prompt, PromptSetConfig, generate_prompt_set, parse_prompt


@dataclass
class SyntheticData:
    rows: list[dict]  # image_key, prompt, label
    image_vectors: dict[str, np.ndarray]
    text_vectors: dict[str, np.ndarray]  # every template prompt the rows' perturbations can reach
    embed_text: Callable[
        [Sequence[str]], np.ndarray
    ]  # function list[str] -> (n, dim) array, for any template prompt


def make_synthetic(
    n_rows: int,
    dim: int = 64,
    n_prompts: int = 200,
    seed: int = 0,
    bad_rate: float = 0.5,
    noise: float = 0.3,
    splits: tuple[str, ...] = ("seen",),
) -> SyntheticData:
    """Labelled rows over `n_prompts` template prompts of the given splits (seen objects only by
    default, as a training set; ("seen", "unseen") gives the reward's unseen validation data)."""
    v = PAPER_VOCABULARY
    rng = np.random.default_rng(seed)
    values = (
        [("count", c) for c in v.counts]
        + [("color", c) for c in v.colors]
        + [("background", b) for b in v.backgrounds]
        + [("object", o) for o in v.objects]
    )
    text_dir = {k: rng.standard_normal(dim) / np.sqrt(dim) for k in values}
    image_dir = {
        k: (
            rng.standard_normal(dim) / np.sqrt(dim)
            if k[0] == "count"
            else 0.7 * text_dir[k] + 0.3 * rng.standard_normal(dim) / np.sqrt(dim)
        )
        for k in values
    }

    def attrs(p: Prompt) -> list[tuple[str, object]]:
        out: list[tuple[str, object]] = [("object", p.object)]
        out += [(a, getattr(p, a)) for a in ("count", "color", "background") if getattr(p, a) is not None]
        return out

    def embed(p: Prompt, dirs: dict, noise_rng: np.random.Generator | None = None) -> np.ndarray:
        x = sum(dirs[a] for a in attrs(p))
        if noise_rng is not None:
            x = x + noise * noise_rng.standard_normal(dim) / np.sqrt(dim)
        return (x / np.linalg.norm(x)).astype(np.float32)

    def embed_text(texts):
        return np.stack([embed(parse_prompt(t), text_dir) for t in texts])

    prompts = generate_prompt_set(PromptSetConfig(size=n_prompts, seed=seed, splits=splits))
    prng = random.Random(seed)
    rows, images = [], {}
    choices = {"count": v.counts, "color": v.colors, "background": v.backgrounds, "object": v.objects}
    for i in range(n_rows):
        p = prompts[i % len(prompts)]
        shown = p
        label = "good"
        if prng.random() < bad_rate:
            attr, _ = prng.choice(attrs(p))
            new = prng.choice([x for x in choices[attr] if x != getattr(p, attr)])
            shown = replace(p, **{attr: new})
            label = "bad"
        key = f"img{i}"
        images[key] = embed(shown, image_dir, rng)
        rows.append({"image_key": key, "prompt": p.text, "label": label})
    texts = {p.text: embed(p, text_dir) for p in prompts}
    return SyntheticData(rows=rows, image_vectors=images, text_vectors=texts, embed_text=embed_text)
