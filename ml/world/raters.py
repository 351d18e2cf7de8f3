"""Oracle raters: annotators that know the truth, with a chosen error rate.

They answer the two questions of the service - is this image good for its prompt, and which of two
images follows the prompt (and looks) better - from the world oracle's verdicts, then flip a share
`error_rate` of their answers at random (a label to its opposite, a vote to one of the other two
choices), the way a careless or tired human would. In-process for `ml world-loop`; the same rater
drives simulated annotators through the REST API (`workers.simulate`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from ml.world.oracle import Verdict, judge

QUALITY_TIE = 0.05  # drawing-quality differences below this are a tie on the fidelity question


class OracleRater:
    """`error_rate`: share of answers flipped at random (1.0: an adversary who always answers wrongly).
    `good_bias`: share of images called "good" whatever they show (a lenient rater; applied before
    the errors, and only to the good/bad question)."""

    def __init__(self, error_rate: float = 0.0, seed: int = 0, good_bias: float = 0.0, name: str = "oracle"):
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"error_rate must be between 0 and 1, not {error_rate}")
        if not 0.0 <= good_bias <= 1.0:
            raise ValueError(f"good_bias must be between 0 and 1, not {good_bias}")
        self.error_rate = error_rate
        self.good_bias = good_bias
        self.name = name
        self.rng = random.Random(seed)
        self.flipped = 0

    def judge(self, images: Sequence[Any], prompts: Sequence[str]) -> list[Verdict]:
        return judge(images, prompts)

    def _err(self) -> bool:
        wrong = self.error_rate > 0 and self.rng.random() < self.error_rate
        self.flipped += wrong
        return wrong

    def label_many(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]:
        """'good' or 'bad' per image (after the rater's errors)."""
        return self.answer([v.aligned for v in self.judge(images, prompts)])

    def answer(self, truths: Sequence[bool]) -> list[str]:
        """'good' or 'bad' for images whose true verdicts are `truths` (the oracle already asked)."""
        out = []
        for aligned in truths:
            says = True if self.good_bias > 0 and self.rng.random() < self.good_bias else bool(aligned)
            good = says != self._err()
            out.append("good" if good else "bad")
        return out

    def label(self, image: Any, prompt: str) -> str:
        return self.label_many([image], [prompt])[0]

    def vote(self, prompt: str, left: Any, right: Any) -> tuple[str, str]:
        """(alignment, fidelity), each 'left', 'right' or 'tie'."""
        a, b = self.judge([left, right], [prompt, prompt])

        def align_score(v: Verdict) -> tuple[bool, float]:
            return v.aligned, sum(v.checks.values()) / len(v.checks)

        sa, sb = align_score(a), align_score(b)
        alignment = "tie" if sa == sb else ("left" if sa > sb else "right")
        d = a.quality - b.quality
        fidelity = "tie" if abs(d) < QUALITY_TIE else ("left" if d > 0 else "right")
        return self._maybe_flip(alignment), self._maybe_flip(fidelity)

    def _maybe_flip(self, choice: str) -> str:
        if self._err():
            return self.rng.choice([c for c in ("left", "right", "tie") if c != choice])
        return choice


def mixed_panel(
    n: int = 10, noisy_share: float = 0.3, noisy_error: float = 0.25, lenient: int = 1, adversarial: int = 1,
    seed: int = 0,
) -> list[OracleRater]:
    """A panel of raters of mixed reliability, as a crowd is: `adversarial` always answer wrongly,
    `lenient` call half of all images good whatever they show, a `noisy_share` of the panel flips
    `noisy_error` of its answers, and the rest are accurate (2% slips)."""
    n_noisy = round(noisy_share * n)
    if adversarial + lenient + n_noisy > n:
        raise ValueError(f"a panel of {n} cannot hold {adversarial} adversarial, {lenient} lenient and {n_noisy} noisy")
    kinds = ["adversarial"] * adversarial + ["lenient"] * lenient + ["noisy"] * n_noisy
    kinds += ["accurate"] * (n - len(kinds))
    settings = {"adversarial": (1.0, 0.0), "lenient": (0.02, 0.5), "noisy": (noisy_error, 0.0), "accurate": (0.02, 0.0)}
    return [
        OracleRater(error_rate=settings[k][0], good_bias=settings[k][1], seed=seed * 1000 + i, name=f"{k}-{i}")
        for i, k in enumerate(kinds)
    ]
