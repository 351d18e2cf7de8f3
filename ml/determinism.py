"""Seeded CPU runs that give the same bits every time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def deterministic(device: str) -> Iterator[None]:
    """Within the block, CPU kernels that would add in thread order use their ordered versions.

    The backward of tensor indexing (`index_put_` with accumulate) sums in whatever order the threads
    finish; trained twice on the same labels with the same seed, the world's reward model scored the
    pool at a mean .402 once and .429 the next time. With the flag both runs give identical weights
    at the same speed. CUDA is left as it is: its deterministic mode needs `CUBLAS_WORKSPACE_CONFIG`
    set before start-up and slower kernels."""
    if not str(device).startswith("cpu"):
        yield
        return
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
