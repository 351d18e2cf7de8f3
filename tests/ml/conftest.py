"""Tiny random-weight models, built once per test session (a few seconds on CPU)."""

import pytest

from ml.generation import load_generator
from ml.tiny import write_tiny_clip, write_tiny_sd


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    return write_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture(scope="session")
def generator(tiny_sd):
    return load_generator(tiny_sd, device="cpu")


@pytest.fixture(scope="session")
def clip(tiny_clip):
    from ml.embeddings import load_clip

    return load_clip(tiny_clip, device="cpu")
