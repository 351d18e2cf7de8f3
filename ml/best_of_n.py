"""Best-of-n by reward: the paper's rejection-sampling baseline (best of 16 vs the original model).

For each prompt, n images are drawn with seeds `base_seed + i`, scored by the reward model on their
CLIP embeddings, and the top k are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ml.embeddings import Clip, EmbeddingCache, embed_images, embed_texts
from ml.generation import GeneratedImage, GenerationConfig, Generator, generate
from ml.reward import RewardModel, score


@dataclass
class BestOfNConfig:
    n: int = field(default=16, metadata={"help": "images sampled per prompt"})
    k: int = field(default=1, metadata={"help": "images kept per prompt (highest reward)"})
    base_seed: int = field(default=0, metadata={"help": "seeds used are base_seed .. base_seed + n - 1"})
    generation: GenerationConfig = field(
        default_factory=GenerationConfig, metadata={"help": "sampler settings"}
    )


@dataclass
class ScoredImage:
    image: GeneratedImage
    reward: float
    rank: int  # 0 = best of its prompt


@dataclass
class BestOfNResult:
    kept: list[ScoredImage]  # k per prompt, best first, prompts in input order
    all_rewards: dict[str, list[float]]  # prompt -> rewards of all n samples, in seed order


def best_of_n(
    config: BestOfNConfig,
    generator: Generator,
    clip: Clip,
    reward: RewardModel,
    prompts: Sequence[str],
    cache: EmbeddingCache | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> BestOfNResult:
    if not 1 <= config.k <= config.n:
        raise ValueError(f"need 1 <= k <= n, got k={config.k}, n={config.n}")
    kept: list[ScoredImage] = []
    all_rewards: dict[str, list[float]] = {}
    for i, prompt in enumerate(prompts):
        requests = [(prompt, config.base_seed + j) for j in range(config.n)]
        images = generate(generator, requests, config.generation, should_cancel=should_cancel).images
        img = embed_images(clip, [g.image for g in images], cache).vectors
        txt = embed_texts(clip, [prompt], cache).vectors
        r = score(reward, img, np.repeat(txt, len(img), axis=0))
        all_rewards[prompt] = [float(x) for x in r]
        order = np.argsort(-r, kind="stable")[: config.k]
        kept += [ScoredImage(image=images[j], reward=float(r[j]), rank=rank) for rank, j in enumerate(order)]
        if progress is not None:
            progress(i + 1, len(prompts))
    return BestOfNResult(kept=kept, all_rewards=all_rewards)
