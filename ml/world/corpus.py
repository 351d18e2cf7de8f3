"""The world's pre-training corpus: scenes with captions that are noisy by design.

Captions are written in the prompt grammar and misdescribe their images the way web alt-text does
(`CaptionNoise`): count words among 2-4 are drawn at random, two colour pairs are swapped half the time,
and two background pairs a quarter of the time. A model trained on them draws clean scenes but
follows count and colour words weakly - capable but misaligned, like Stable Diffusion v1.5 on counts
and combinations. A swap is equally likely in both directions, so classifier-free guidance cannot
undo it: only feedback on which images follow their prompt can.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from ml.prompts import render
from ml.world.scene import Scene


@dataclass(frozen=True)
class CaptionNoise:
    """How pre-training captions misdescribe their images (the designed misalignment)."""

    count_groups: tuple[tuple[int, ...], ...] = field(
        default=((2, 3, 4),), metadata={"help": "counts whose words get mixed up within a group"}
    )
    count_mix: float = field(
        default=1.0,
        metadata={"help": "chance that a count word of a group is redrawn from its group (1: the word says nothing)"},
    )
    color_pairs: tuple[tuple[str, str], ...] = field(
        default=(("red", "yellow"), ("green", "blue")), metadata={"help": "colour words swapped with each other"}
    )
    color_rate: float = field(default=0.5, metadata={"help": "chance that a paired colour word is swapped"})
    background_pairs: tuple[tuple[str, str], ...] = field(
        default=(("forest", "sea"), ("desert", "moon")), metadata={"help": "background words swapped"}
    )
    background_rate: float = field(default=0.25, metadata={"help": "chance that a paired background is swapped"})
    mention_color: float = field(default=0.7, metadata={"help": "chance that a caption names the colour"})
    mention_background: float = field(default=0.7, metadata={"help": "chance that a caption names the background"})
    mention_one: float = field(default=0.3, metadata={"help": "chance that a single object is 'one', not 'a'"})


CLEAN = CaptionNoise(count_mix=0.0, color_rate=0.0, background_rate=0.0)


def _swap(value, pairs, rate: float, rng: random.Random):
    for a, b in pairs:
        if value in (a, b) and rng.random() < rate:
            return b if value == a else a
    return value


def caption(scene: Scene, noise: CaptionNoise, rng: random.Random) -> str:
    """A caption in the prompt grammar; what it names about count, colour and background may be wrong."""
    count: int | None = scene.count
    for group in noise.count_groups:
        if count in group and rng.random() < noise.count_mix:
            count = rng.choice(group)
    if count == 1 and rng.random() >= noise.mention_one:
        count = None  # "A box" rather than "One box"
    color = _swap(scene.color, noise.color_pairs, noise.color_rate, rng) if rng.random() < noise.mention_color else None
    background = (
        _swap(scene.background, noise.background_pairs, noise.background_rate, rng)
        if rng.random() < noise.mention_background
        else None
    )
    return render(scene.object, count, color, background)


def corpus(n: int, seed: int = 0, noise: CaptionNoise | None = None) -> list[tuple[Scene, str]]:
    """n random scenes with their (noisy) captions: the world's pre-training pairs."""
    from ml.world.scene import random_scene

    rng = random.Random(seed)
    noise = CaptionNoise() if noise is None else noise
    out = []
    for _ in range(n):
        scene = random_scene(rng)
        out.append((scene, caption(scene, noise, rng)))
    return out


def regulariser(n: int, seed: int = 0, noise: CaptionNoise | None = None) -> list[tuple[Scene, str]]:
    """Pre-training pairs for fine-tuning's β term: single-object scenes whose captions name the object,
    and a colour or background only where the corpus never swaps it ("A white colored box", "One tree").

    They are true and say nothing about what the base gets wrong (counts of 2-4, swapped colours), so
    they keep the drawing intact without pulling the model back to its confusions, as the paper's
    aesthetic pre-training pairs do for Stable Diffusion. Pairs that carry the confusion cancel the gain
    of fine-tuning (measured: docs/world.md)."""
    from ml.world.scene import place, random_scene

    rng = random.Random(seed)
    noise = CaptionNoise() if noise is None else noise
    swapped = {w for pair in (*noise.color_pairs, *noise.background_pairs) for w in pair}
    out = []
    for _ in range(n):
        scene = random_scene(rng)
        scene = Scene(scene.object, 1, scene.color, scene.background, place(1, rng))
        color = scene.color if scene.color not in swapped and rng.random() < 0.7 else None
        bg = scene.background if scene.background not in swapped and rng.random() < 0.7 else None
        out.append((scene, render(scene.object, None, color, bg) if color or bg else render(scene.object, 1)))
    return out


def pretrain_pairs(n: int, seed: int = 0, noise: CaptionNoise | None = None) -> list:
    """The β term's pre-training pairs (`regulariser`) as `ml.finetune.PretrainSample`s."""
    from ml.finetune import PretrainSample
    from ml.world.scene import draw, to_pil

    return [PretrainSample(image=to_pil(draw(s)), caption=c) for s, c in regulariser(n, seed, noise)]


def write_pretrain_folder(out_dir: str | Path, n: int, seed: int = 0, noise: CaptionNoise | None = None) -> Path:
    """The same pairs as a Hugging Face imagefolder (`metadata.jsonl` + PNGs), for `T2IF_PRETRAIN_DIR`."""
    import json

    from ml.world.scene import draw, to_pil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (scene, text) in enumerate(regulariser(n, seed, noise)):
        name = f"{i:06d}.png"
        to_pil(draw(scene)).save(out / name)
        lines.append(json.dumps({"file_name": name, "text": text}))
    (out / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return out
