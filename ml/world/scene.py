"""The shapes world: scenes and their pixels.

A scene is 1-4 copies of one shape (the world's objects), all of one colour, on a plain background,
in a 32 x 32 RGB image. Prompts use the paper's grammar over the world's vocabulary
(`ml.prompts.WORLD_VOCABULARY`: "Two red boxes in the forest"), so the same parser, categories,
seen/unseen split and perturbations serve the world and Stable Diffusion alike.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from ml.prompts import WORLD_VOCABULARY, Prompt, make_prompt

SIZE = 32  # image side in pixels
GLYPH = 9  # object side in pixels
MAX_COUNT = 4  # one object per cell of a 2 x 2 grid

# Object colours: saturated, far from every background and from each other.
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "yellow": (245, 215, 45),
    "green": (60, 185, 75),
    "blue": (55, 95, 230),
    "white": (245, 245, 245),
    "purple": (160, 70, 200),
}
# Backgrounds: muted, so that objects stand out.
BACKGROUND_RGB: dict[str, tuple[int, int, int]] = {
    "forest": (30, 72, 38),
    "sea": (38, 78, 128),
    "desert": (212, 182, 128),
    "moon": (56, 56, 66),
}


def _glyphs() -> dict[str, np.ndarray]:
    y, x = np.mgrid[0:GLYPH, 0:GLYPH]
    c = (GLYPH - 1) / 2
    r2 = (x - c) ** 2 + (y - c) ** 2
    return {
        "box": np.ones((GLYPH, GLYPH), bool),
        "plate": ((x - c) / (c + 0.5)) ** 2 + ((y - c) / 2.6) ** 2 <= 1.0,  # a flat ellipse, seen from the side
        "donut": (r2 <= (c + 0.5) ** 2) & (r2 > 2.0**2),
        "tree": np.abs(x - c) <= y / 2,  # a triangle, apex up
        "rose": (np.abs(x - c) <= 1.5) | (np.abs(y - c) <= 1.5) | (r2 <= 2.5**2),  # four petals
    }


GLYPHS = _glyphs()


@dataclass(frozen=True)
class Scene:
    object: str
    count: int
    color: str
    background: str
    positions: tuple[tuple[int, int], ...]  # top-left corner (row, col) of each object


def place(count: int, rng: random.Random) -> tuple[tuple[int, int], ...]:
    """Top-left corners of `count` objects, each centred in its own cell of a 2 x 2 grid.

    Fixed slots rather than free placement keep layouts simple enough for a small model to learn on
    two CPU cores, and keep objects apart, so that every object is its own connected component."""
    cell = SIZE // 2
    offset = (cell - GLYPH) // 2
    slots = rng.sample([(0, 0), (0, 1), (1, 0), (1, 1)], count)
    return tuple(sorted((r * cell + offset, c * cell + offset) for r, c in slots))


def random_scene(rng: random.Random, objects: tuple[str, ...] | None = None) -> Scene:
    v = WORLD_VOCABULARY
    count = rng.choice(v.counts)
    return Scene(
        object=rng.choice(objects or v.objects),
        count=count,
        color=rng.choice(v.colors),
        background=rng.choice(v.backgrounds),
        positions=place(count, rng),
    )


def scene_for(prompt: Prompt, rng: random.Random) -> Scene:
    """A scene that shows exactly what the prompt says; unnamed attributes are drawn at random."""
    v = WORLD_VOCABULARY
    count = prompt.count or 1
    return Scene(
        object=prompt.object,
        count=count,
        color=prompt.color or rng.choice(v.colors),
        background=prompt.background or rng.choice(v.backgrounds),
        positions=place(count, rng),
    )


def draw(scene: Scene) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8 pixels of a scene."""
    img = np.empty((SIZE, SIZE, 3), np.uint8)
    img[:] = BACKGROUND_RGB[scene.background]
    mask = GLYPHS[scene.object]
    for r, c in scene.positions:
        img[r : r + GLYPH, c : c + GLYPH][mask] = COLOR_RGB[scene.color]
    return img


def to_pil(pixels: np.ndarray):
    from PIL import Image

    return Image.fromarray(pixels, "RGB")


def prompt_of(scene: Scene) -> Prompt:
    """The full, true description of a scene (every attribute named)."""
    return make_prompt(scene.object, scene.count, scene.color, scene.background, WORLD_VOCABULARY)
