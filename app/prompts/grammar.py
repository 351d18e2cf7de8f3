"""The app's window on the prompt grammar (paper vocabulary, English, parsing), which lives in
ml.prompts. That module is stdlib-only; this is the one import from ml the app may make."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from app.prompts.schemas import Highlight
from ml import prompts as _grammar

CATEGORIES = ("count", "color", "background", "combination")


def describe(text: str) -> tuple[str, str, dict[str, Any]]:
    """(category, split, attributes) of a prompt; prompts outside the templates are 'other'."""
    parsed = _grammar.parse_prompt(text)
    if parsed is None:
        return "other", "seen", {}
    attrs = {k: v for k, v in parsed.attributes().items() if k not in ("text", "category", "split") and v is not None}
    return parsed.category, parsed.split, attrs


def from_template(size: int | None, seed: int, categories: list[str], splits: list[str],
                  vocabulary: str = "paper") -> list[dict[str, Any]]:
    config = _grammar.PromptSetConfig(size=size, seed=seed, categories=tuple(categories), splits=tuple(splits),
                                      vocabulary=_grammar.VOCABULARIES[vocabulary])
    out = []
    for p in _grammar.generate_prompt_set(config):
        attrs = {k: v for k, v in p.attributes().items() if k not in ("text", "category", "split") and v is not None}
        out.append({"text": p.text, "category": p.category, "split": p.split, "attributes": attrs})
    return out


@lru_cache(maxsize=4096)
def highlights(text: str) -> tuple[Highlight, ...]:
    """Character spans of the count / colour / object / background words, for the rating page.
    They depend on the prompt text alone, so they are computed once per process."""
    parsed = _grammar.parse_prompt(text)
    if parsed is None:
        return ()
    parsed = _grammar.with_text(parsed, text)
    return tuple(Highlight(start=s, end=e, kind=k) for s, e, k in _grammar.highlight_spans(parsed))
