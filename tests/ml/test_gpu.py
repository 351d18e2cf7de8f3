"""Checks that only mean something on a CUDA machine (fp16 + SDPA path, full-size architectures)."""

import numpy as np
import pytest
import torch

from ml.generation import GenerationConfig, generate, load_generator
from ml.tiny import TinyConfig, write_tiny_clip, write_tiny_sd

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_fp16_generation_is_reproducible_from_seed(tiny_sd):
    gen = load_generator(tiny_sd, device="cuda")
    assert gen.dtype == torch.float16
    cfg = GenerationConfig(steps=3, batch_size=2)
    a = generate(gen, [("Two dogs", 1), ("A red cup", 2)], cfg).images[1].image
    b = generate(gen, [("A red cup", 2)], cfg).images[0].image
    assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 2


@pytest.mark.slow
def test_full_size_models_load_and_run(tmp_path):
    from ml.embeddings import embed_texts, load_clip

    sd = write_tiny_sd(tmp_path / "sd", TinyConfig(full_size=True))
    clip = write_tiny_clip(tmp_path / "clip", TinyConfig(full_size=True))
    gen = load_generator(sd, device="cuda")
    assert generate(gen, [("Two dogs", 1)], GenerationConfig(steps=2)).images[0].image.size == (512, 512)
    assert embed_texts(load_clip(clip, device="cuda"), ["Two dogs"]).vectors.shape == (1, 768)
