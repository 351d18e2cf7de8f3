"""Probe prompts of the paper: vocabulary, English rendering, parsing and perturbation.

A prompt is rendered from its attributes (category, object, count, colour, background), so that the
text and the parsed attributes can never disagree; the parser is the inverse of the renderer and is
used for uploaded prompt lists and for highlighting attribute words in the UI.
"""

from __future__ import annotations

import itertools
import random
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

COLORS = ("red", "yellow", "green", "blue", "black", "pink", "purple", "white", "brown")
COUNTS = (1, 2, 3, 4, 5, 6)
BACKGROUNDS = ("forest", "city", "moon", "field", "sea", "table", "desert", "San Francisco")
OBJECTS = (
    "dog",
    "cat",
    "lion",
    "orange",
    "vase",
    "cup",
    "apple",
    "chair",
    "bird",
    "cake",
    "bicycle",
    "tree",
    "donut",
    "box",
    "plate",
    "clock",
    "backpack",
    "car",
    "airplane",
    "bear",
    "horse",
    "tiger",
    "rabbit",
    "rose",
    "wolf",
)
UNSEEN_OBJECTS = ("bear", "tiger", "rabbit", "rose", "wolf")
CATEGORIES = ("count", "color", "background", "combination")

NUMBER_WORDS = {
    1: "one",
    2: "two",
    3: "three",
    4: "four",
    5: "five",
    6: "six",
    7: "seven",
    8: "eight",
    9: "nine",
    10: "ten",
}
_WORD_NUMBERS = {w: n for n, w in NUMBER_WORDS.items()}

# Background phrases: a place you are *on* (moon, table) or *in*; proper names take no article.
_BACKGROUND_PHRASES = {
    "forest": "in the forest",
    "city": "in the city",
    "moon": "on the moon",
    "field": "in the field",
    "sea": "in the sea",
    "table": "on the table",
    "desert": "in the desert",
    "San Francisco": "in San Francisco",
}

# Irregular plurals the suffix rules get wrong; extend as the vocabulary grows.
_IRREGULAR_PLURALS = {
    "mouse": "mice",
    "goose": "geese",
    "person": "people",
    "man": "men",
    "woman": "women",
    "child": "children",
    "tooth": "teeth",
    "foot": "feet",
    "sheep": "sheep",
    "deer": "deer",
    "fish": "fish",
    "ox": "oxen",
    "knife": "knives",
    "wolf": "wolves",
    "leaf": "leaves",
    "shelf": "shelves",
    "loaf": "loaves",
    "half": "halves",
    "calf": "calves",
    "wife": "wives",
    "life": "lives",
    "thief": "thieves",
    "scarf": "scarves",
    "tomato": "tomatoes",
    "potato": "potatoes",
    "hero": "heroes",
    "cactus": "cacti",
}
# Words starting with a vowel letter but a consonant sound, and the reverse.
_A_EXCEPTIONS = ("uni", "use", "user", "euro", "one", "ufo")
_AN_EXCEPTIONS = ("hour", "honest", "honor", "heir")


def pluralize(noun: str) -> str:
    """English plural of a (lower-case) noun: irregular table first, then suffix rules."""
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    if re.search(r"(s|x|z|ch|sh)$", noun):
        return noun + "es"
    if re.search(r"[^aeiou]y$", noun):
        return noun[:-1] + "ies"
    return noun + "s"


def indefinite_article(word: str) -> str:
    """'a' or 'an' for the word that follows, by sound as far as simple rules go."""
    w = word.lower()
    if w.startswith(_AN_EXCEPTIONS):
        return "an"
    if w.startswith(_A_EXCEPTIONS):
        return "a"
    return "an" if w[:1] in "aeiou" else "a"


@dataclass(frozen=True)
class Vocabulary:
    colors: tuple[str, ...] = field(default=COLORS, metadata={"help": "colour words"})
    counts: tuple[int, ...] = field(default=COUNTS, metadata={"help": "object counts"})
    backgrounds: tuple[str, ...] = field(default=BACKGROUNDS, metadata={"help": "background places"})
    objects: tuple[str, ...] = field(default=OBJECTS, metadata={"help": "object nouns (singular)"})
    unseen_objects: tuple[str, ...] = field(
        default=UNSEEN_OBJECTS, metadata={"help": "objects held out for evaluation ('unseen' split)"}
    )


PAPER_VOCABULARY = Vocabulary()

# The shapes world (`ml.world`): a subset of the paper's words, so that every world prompt is also a
# paper prompt (same parser, categories and split). Objects are drawn as shapes: box (square),
# plate (disc), donut (ring), tree (triangle) and, held out as the unseen object, rose (a flower).
WORLD_VOCABULARY = Vocabulary(
    colors=("red", "yellow", "green", "blue", "white", "purple"),
    counts=(1, 2, 3, 4),
    backgrounds=("forest", "sea", "desert", "moon"),
    objects=("box", "plate", "donut", "tree", "rose"),
    unseen_objects=("rose",),
)
VOCABULARIES = {"paper": PAPER_VOCABULARY, "world": WORLD_VOCABULARY}


@dataclass(frozen=True)
class Prompt:
    """A probe prompt and the attributes it was made from (None where the prompt says nothing)."""

    text: str
    category: str
    object: str
    count: int | None = None
    color: str | None = None
    background: str | None = None
    split: str = "seen"

    def attributes(self) -> dict:
        return asdict(self)


def category_of(count: int | None, color: str | None, background: str | None) -> str:
    present = [name for name, v in (("count", count), ("color", color), ("background", background)) if v]
    if not present:
        raise ValueError("a probe prompt needs at least one of count, color, background")
    return present[0] if len(present) == 1 else "combination"


def render(
    obj: str,
    count: int | None = None,
    color: str | None = None,
    background: str | None = None,
) -> str:
    """English text for the attributes, in the paper's templates."""
    noun = obj if count in (None, 1) else pluralize(obj)
    if count is None:
        # The colour template of the paper says "colored" when colour is the only attribute.
        adjective = f"{color} colored" if color and not background else color
        words = [adjective, noun] if adjective else [noun]
        words.insert(0, indefinite_article(words[0]))
    else:
        words = [NUMBER_WORDS[count]] + ([color] if color else []) + [noun]
    if background:
        words.append(_BACKGROUND_PHRASES.get(background, f"in the {background}"))
    text = " ".join(words)
    return text[0].upper() + text[1:]


def make_prompt(
    obj: str,
    count: int | None = None,
    color: str | None = None,
    background: str | None = None,
    vocabulary: Vocabulary = PAPER_VOCABULARY,
) -> Prompt:
    return Prompt(
        text=render(obj, count, color, background),
        category=category_of(count, color, background),
        object=obj,
        count=count,
        color=color,
        background=background,
        split="unseen" if obj in vocabulary.unseen_objects else "seen",
    )


def all_prompts(vocabulary: Vocabulary = PAPER_VOCABULARY) -> dict[str, list[Prompt]]:
    """Every prompt the templates can make, by category (combinations: 2 or 3 attributes)."""
    v = vocabulary
    counts: list[int | None] = [None, *v.counts]
    colors: list[str | None] = [None, *v.colors]
    backgrounds: list[str | None] = [None, *v.backgrounds]
    out: dict[str, list[Prompt]] = {c: [] for c in CATEGORIES}
    for obj, n, col, bg in itertools.product(v.objects, counts, colors, backgrounds):
        if n is None and col is None and bg is None:
            continue
        p = make_prompt(obj, n, col, bg, v)
        out[p.category].append(p)
    return out


@dataclass
class PromptSetConfig:
    size: int | None = field(
        default=2774,
        metadata={
            "help": "number of prompts; all single-attribute prompts are kept and combinations "
            "are sampled to fill (None: every combination too)"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of the deterministic sampling"})
    categories: tuple[str, ...] = field(default=CATEGORIES, metadata={"help": "categories to include"})
    splits: tuple[str, ...] = field(
        default=("seen",),
        metadata={
            "help": "splits to include; by default the unseen objects are held out, as the paper keeps them "
            "for evaluation only (an evaluation set asks for ('seen', 'unseen'): half of each)"
        },
    )
    vocabulary: Vocabulary = field(default=PAPER_VOCABULARY, metadata={"help": "words to build from"})
    balance_splits: bool = field(
        default=True,
        metadata={
            "help": "share the size equally between the splits (False: draw from them pooled, as sets made "
            "before the split balance were)"
        },
    )


def generate_prompt_set(config: PromptSetConfig) -> list[Prompt]:
    """A deterministic prompt set: by default the paper's size (every single-attribute prompt plus
    sampled combinations); a set too small for every single-attribute prompt takes the categories
    in turn, so that it stays balanced (a 40-prompt set has 10 of each where the vocabulary allows).

    With several splits, the size is shared equally between them (a 120-prompt evaluation set over
    seen and unseen objects has 60 of each, as the paper's), a split that runs out leaving the rest
    to the others; each split's share is then chosen as above."""
    templates = all_prompts(config.vocabulary)
    by_split = {
        s: {c: [p for p in ps if p.split == s] for c, ps in templates.items() if c in config.categories}
        for s in dict.fromkeys(config.splits)
    }
    rng = random.Random(config.seed)
    total = sum(len(ps) for by_cat in by_split.values() for ps in by_cat.values())
    if config.size is None or config.size >= total:
        chosen = [p for by_cat in by_split.values() for ps in by_cat.values() for p in ps]
    elif not config.balance_splits:
        pooled = {c: [p for p in ps if p.split in by_split] for c, ps in templates.items() if c in config.categories}
        chosen = _choose(pooled, config.size, rng)
    else:
        chosen = []
        for split, quota in _split_quotas(by_split, config.size).items():
            chosen += _choose(by_split[split], quota, rng)
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return sorted(chosen, key=lambda p: (order[p.category], p.text))


def _split_quotas(by_split: dict[str, dict[str, list[Prompt]]], size: int) -> dict[str, int]:
    """Equal shares of `size` per split (earlier splits take the remainder); a split with fewer
    prompts than its share gives the difference to the others."""
    available = {s: sum(len(ps) for ps in by_cat.values()) for s, by_cat in by_split.items()}
    quotas: dict[str, int] = {}
    left = size
    for i, s in enumerate(sorted(available, key=lambda s: available[s])):
        rest = len(available) - i
        quotas[s] = min(available[s], left // rest)
        left -= quotas[s]
    for s in by_split:  # the remainder of an uneven division, first splits first
        extra = min(left, available[s] - quotas[s])
        quotas[s] += extra
        left -= extra
    return {s: quotas[s] for s in by_split}


def _choose(by_cat: dict[str, list[Prompt]], size: int, rng: random.Random) -> list[Prompt]:
    """`size` prompts of one split: every single-attribute prompt plus sampled combinations when
    they fit, else the categories in turn."""
    total = sum(len(ps) for ps in by_cat.values())
    if size >= total:
        return [p for ps in by_cat.values() for p in ps]
    singles = [p for c, ps in by_cat.items() if c != "combination" for p in ps]
    combos = by_cat.get("combination", [])
    if len(singles) <= size:
        return singles + rng.sample(combos, size - len(singles))
    pools = [rng.sample(ps, len(ps)) for ps in by_cat.values()]
    chosen: list[Prompt] = []
    while len(chosen) < size:
        for pool in pools:
            if pool and len(chosen) < size:
                chosen.append(pool.pop())
    return chosen


# ---------------------------------------------------------------- parsing


def parse_prompt(text: str, vocabulary: Vocabulary = PAPER_VOCABULARY) -> Prompt | None:
    """Attributes of a prompt in the template language, or None when it is not one.

    Accepts what `render` writes plus small variations (digits, 'coloured', no final article).
    """
    v = vocabulary
    s = " ".join(text.strip().rstrip(".").split()).lower()
    background = None
    for bg in sorted(v.backgrounds, key=len, reverse=True):
        m = re.search(rf"\s+(in|on|at)\s+(the\s+|a\s+)?{re.escape(bg.lower())}$", s)
        if m:
            background, s = bg, s[: m.start()]
            break
    words = s.split()
    if not words:
        return None
    count = None
    if words[0] in ("a", "an"):
        words = words[1:]
    elif words[0] in _WORD_NUMBERS or words[0].isdigit():
        count = _WORD_NUMBERS.get(words[0]) or int(words[0])
        words = words[1:]
    color = None
    if words and words[0] in v.colors:
        color = words[0]
        words = words[1:]
        if words and words[0] in ("colored", "coloured"):
            words = words[1:]
    if len(words) != 1:
        return None
    obj = _noun_lookup(v).get(words[0])
    if obj is None:
        return None
    noun_plural = words[0] != obj
    if noun_plural and count in (None, 1) or (not noun_plural and count not in (None, 1)):
        return None  # "a dogs", "two dog": not a well-formed probe
    if count is None and color is None and background is None:
        return None
    return Prompt(
        text=" ".join(text.split()),
        category=category_of(count, color, background),
        object=obj,
        count=count,
        color=color,
        background=background,
        split="unseen" if obj in v.unseen_objects else "seen",
    )


def _noun_lookup(v: Vocabulary) -> dict[str, str]:
    table = {o: o for o in v.objects}
    table.update({pluralize(o): o for o in v.objects})
    return table


def highlight_spans(prompt: Prompt) -> list[tuple[int, int, str]]:
    """(start, end, attribute) character spans of the attribute words in the prompt text, for the UI."""
    spans = []
    low = prompt.text.lower()
    words = {
        "count": NUMBER_WORDS.get(prompt.count or 0),
        "color": prompt.color,
        "object": None
        if prompt.object is None
        else pluralize(prompt.object)
        if prompt.count not in (None, 1)
        else prompt.object,
        "background": prompt.background.lower() if prompt.background else None,
    }
    for attr, word in words.items():
        if word:
            m = re.search(rf"\b{re.escape(word)}\b", low)
            if m:
                spans.append((m.start(), m.end(), attr))
    return sorted(spans)


# ---------------------------------------------------------------- perturbation


def perturb(
    prompt: Prompt,
    n_negatives: int = 9,
    seed: int = 0,
    vocabulary: Vocabulary = PAPER_VOCABULARY,
) -> list[Prompt]:
    """`n_negatives` distinct prompts that each differ from `prompt` in at least one attribute.

    Single-attribute swaps (count, colour, object, background) come first, because a near miss is
    the informative negative for the prompt-classification loss; two-attribute swaps fill in when a
    prompt has too few single swaps. The order depends only on the prompt text and `seed`.
    Object swaps draw from the seen objects only, so that the unseen ones never reach training.
    """
    if n_negatives <= 0:
        return []
    v = vocabulary
    choices: dict[str, list[int] | list[str]] = {
        "count": [c for c in v.counts if c != prompt.count] if prompt.count else [],
        "color": [c for c in v.colors if c != prompt.color] if prompt.color else [],
        "background": [b for b in v.backgrounds if b != prompt.background] if prompt.background else [],
        # never an unseen object: the negatives of a training prompt are training data too
        "object": [o for o in v.objects if o != prompt.object and o not in v.unseen_objects],
    }
    rng = random.Random(zlib.crc32(prompt.text.encode()) ^ seed)
    base: dict[str, Any] = {  # keyword arguments of make_prompt
        "obj": prompt.object,
        "count": prompt.count,
        "color": prompt.color,
        "background": prompt.background,
    }
    key = {"object": "obj", "count": "count", "color": "color", "background": "background"}
    out: list[Prompt] = []
    seen = {prompt.text.lower()}
    for n_swaps in (1, 2):
        candidates: list[dict[str, Any]] = []
        for attrs in itertools.combinations([a for a, c in choices.items() if c], n_swaps):
            for values in itertools.product(*(choices[a] for a in attrs)):
                candidates.append({**base, **{key[a]: val for a, val in zip(attrs, values, strict=True)}})
        rng.shuffle(candidates)
        for c in candidates:
            p = make_prompt(vocabulary=v, **c)
            if p.text.lower() not in seen:
                seen.add(p.text.lower())
                out.append(p)
                if len(out) == n_negatives:
                    return out
    raise ValueError(f"cannot make {n_negatives} distinct perturbations of {prompt.text!r}")


def perturbed_texts(
    texts: Iterable[str], n_negatives: int, seed: int = 0, vocabulary: Vocabulary = PAPER_VOCABULARY
) -> dict[str, list[str] | None]:
    """Perturbed prompt texts for each text; None for texts outside the template language."""
    out: dict[str, list[str] | None] = {}
    for t in texts:
        if t in out:
            continue
        p = parse_prompt(t, vocabulary)
        out[t] = None if p is None else [q.text for q in perturb(p, n_negatives, seed, vocabulary)]
    return out


def with_text(prompt: Prompt, text: str) -> Prompt:
    return replace(prompt, text=text)


def prompts_from_texts(texts: Sequence[str], vocabulary: Vocabulary = PAPER_VOCABULARY) -> list[Prompt]:
    """Parse an uploaded list; raises ValueError naming the lines that are not probe prompts."""
    parsed = [(t, parse_prompt(t, vocabulary)) for t in texts]
    bad = [t for t, p in parsed if p is None]
    if bad:
        raise ValueError(f"{len(bad)} prompt(s) not in the template language, e.g. {bad[:3]}")
    return [p for _, p in parsed if p is not None]
