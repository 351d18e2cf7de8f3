"""The world's pixel oracle: does an image show what its prompt says, attribute by attribute?

It reads a scene back from pixels: the background is the most common background colour; objects are
the 4-connected components of pixels that differ from it; each object's colour is the palette
colour nearest to its median pixel and its shape the glyph it overlaps best (intersection over
union after scaling its bounding box to a glyph's box of about the same size). Specks below `MIN_AREA` pixels are stray
marks, not objects.

A verdict checks the object (shape), the count (a prompt without a number means one: "A red box"),
and the colour and background where the prompt names them; `aligned` is all of those at once.
`quality` (0-1) says how cleanly the scene is drawn whatever it shows: shapes that match a glyph,
no stray marks, colours on the palette. It answers the evaluation's fidelity question.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ml.prompts import WORLD_VOCABULARY, Prompt, parse_prompt
from ml.world.scene import BACKGROUND_RGB, COLOR_RGB, GLYPH, GLYPHS, SIZE

MIN_AREA = 10  # pixels; smaller components are stray marks
FOREGROUND_DISTANCE = 60.0  # RGB distance from the background colour that makes a pixel foreground
MIN_IOU = 0.5  # a component must overlap its glyph at least this much to count as that shape
ATTRIBUTES = ("object", "count", "color", "background")

_BG_NAMES = list(BACKGROUND_RGB)
_BG = np.array([BACKGROUND_RGB[b] for b in _BG_NAMES], np.float32)
_COLOR_NAMES = list(COLOR_RGB)
_COLORS = np.array([COLOR_RGB[c] for c in _COLOR_NAMES], np.float32)
_GLYPH_NAMES = list(GLYPHS)
_GLYPH_MASKS = np.stack([GLYPHS[g] for g in _GLYPH_NAMES])  # (G, GLYPH, GLYPH)


@dataclass
class Detected:
    background: str
    count: int
    colors: list[str]
    shapes: list[str]
    ious: list[float]
    stray_pixels: int


@dataclass
class Verdict:
    prompt: str
    aligned: bool
    checks: dict[str, bool]  # attribute -> correct, for the attributes this prompt names (object, count always)
    quality: float
    detected: Detected = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_pixels(image: Any) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8 from a PIL image, encoded bytes, a path or an array."""
    if isinstance(image, np.ndarray):
        arr = image
    else:
        from PIL import Image

        if isinstance(image, bytes):
            image = Image.open(io.BytesIO(image))
        elif not hasattr(image, "convert"):
            image = Image.open(image)
        image = image.convert("RGB")
        if image.size != (SIZE, SIZE):
            image = image.resize((SIZE, SIZE), Image.Resampling.BOX)
        arr = np.asarray(image)
    if arr.shape != (SIZE, SIZE, 3):
        raise ValueError(f"expected a {SIZE}x{SIZE} RGB image, got an array of shape {arr.shape}")
    return arr


def _components(fg: np.ndarray) -> np.ndarray:
    """4-connected component labels of a (B, H, W) mask: the smallest flat index in each component,
    -1 off the mask. Label propagation, all images at once."""
    b, h, w = fg.shape
    big = np.iinfo(np.int32).max
    labels = np.where(fg, np.arange(h * w, dtype=np.int32).reshape(1, h, w), big)
    while True:
        pad = np.pad(labels, ((0, 0), (1, 1), (1, 1)), constant_values=big)
        nb = np.minimum.reduce(
            [pad[:, 1:-1, 1:-1], pad[:, :-2, 1:-1], pad[:, 2:, 1:-1], pad[:, 1:-1, :-2], pad[:, 1:-1, 2:]]
        )
        nb = np.where(fg, nb, big)
        if np.array_equal(nb, labels):
            return np.where(fg, labels, -1)
        labels = nb


def _bbox(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


_GLYPH_CROPS = [_bbox(m) for m in _GLYPH_MASKS]


def _shape(mask: np.ndarray) -> tuple[str, float]:
    """The glyph a component overlaps best, and that overlap (intersection over union). The component's
    bounding box is scaled to each glyph's box when the two sizes are within 2 pixels (drawing blurs
    edges); a glyph of another size or aspect does not match at all."""
    crop = _bbox(mask)
    best, best_iou = _GLYPH_NAMES[0], 0.0
    for name, glyph in zip(_GLYPH_NAMES, _GLYPH_CROPS, strict=True):
        (h, w), (gh, gw) = crop.shape, glyph.shape
        if abs(h - gh) > 2 or abs(w - gw) > 2:
            continue
        ri = ((np.arange(gh) + 0.5) * h / gh).astype(int)
        ci = ((np.arange(gw) + 0.5) * w / gw).astype(int)
        scaled = crop[np.ix_(ri, ci)]
        iou = float((glyph & scaled).sum() / max(1, (glyph | scaled).sum()))
        if iou > best_iou:
            best, best_iou = name, iou
    return best, best_iou


def detect(images: Sequence[Any]) -> list[Detected]:
    """Read the scenes back from pixels."""
    if not len(images):
        return []
    px = np.stack([as_pixels(im) for im in images]).astype(np.float32)  # (B, H, W, 3)
    d_bg = np.linalg.norm(px[..., None, :] - _BG, axis=-1)  # (B, H, W, nB)
    d_obj = np.linalg.norm(px[..., None, :] - _COLORS, axis=-1)
    nearest_bg = d_bg.argmin(-1)
    is_bg = d_bg.min(-1) < d_obj.min(-1)
    votes = np.stack([((nearest_bg == k) & is_bg).sum(axis=(1, 2)) for k in range(len(_BG_NAMES))], 1)
    bg = votes.argmax(1)
    fg = np.take_along_axis(d_bg, bg[:, None, None, None], -1)[..., 0] > FOREGROUND_DISTANCE
    labels = _components(fg)
    out = []
    for i in range(len(px)):
        ids, areas = np.unique(labels[i][labels[i] >= 0], return_counts=True)
        colors, shapes, ious, stray = [], [], [], 0
        for lab, area in zip(ids, areas, strict=True):
            mask = labels[i] == lab
            if area < MIN_AREA:
                stray += int(area)
                continue
            median = np.median(px[i][mask], axis=0)
            colors.append(_COLOR_NAMES[int(np.linalg.norm(_COLORS - median, axis=-1).argmin())])
            shape, iou = _shape(mask)
            shapes.append(shape)
            ious.append(round(iou, 4))
        out.append(Detected(_BG_NAMES[int(bg[i])], len(colors), colors, shapes, ious, stray))
    return out


def quality(d: Detected) -> float:
    """How cleanly a scene is drawn (0-1): mean glyph overlap of its objects, less stray marks."""
    if not d.count:
        return 0.0
    return max(0.0, float(np.mean(d.ious)) - d.stray_pixels / (GLYPH * GLYPH))


def check(prompt: Prompt, d: Detected) -> dict[str, bool]:
    checks = {
        "object": all(s == prompt.object and iou >= MIN_IOU for s, iou in zip(d.shapes, d.ious, strict=True))
        and d.count > 0,
        "count": d.count == (prompt.count or 1),
    }
    if prompt.color is not None:
        checks["color"] = d.count > 0 and all(c == prompt.color for c in d.colors)
    if prompt.background is not None:
        checks["background"] = d.background == prompt.background
    return checks


def judge(images: Sequence[Any], prompts: Sequence[str]) -> list[Verdict]:
    """One verdict per (image, prompt). Prompts must be in the world's template language."""
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
    parsed = []
    for text in prompts:
        p = parse_prompt(text, WORLD_VOCABULARY)
        if p is None:
            raise ValueError(f"not a prompt of the shapes world: {text!r}")
        parsed.append(p)
    out = []
    for text, p, d in zip(prompts, parsed, detect(images), strict=True):
        checks = check(p, d)
        out.append(Verdict(prompt=text, aligned=all(checks.values()), checks=checks, quality=quality(d), detected=d))
    return out
