"""Tiny helpers to read figures out of the dashboard HTML (data-* hooks, no parser dependency)."""

from __future__ import annotations

import html
import re


def block(page: str, attr: str, value: str, tag: str = "tr") -> str:
    m = re.search(rf'<{tag}\b[^>]*\b{attr}="{re.escape(value)}"[^>]*>(.*?)</{tag}>', page, re.S)
    assert m, f"no <{tag} {attr}={value!r}> in page"
    return m.group(1)


def figure(fragment: str, name: str) -> str:
    m = re.search(rf'data-figure="{re.escape(name)}"[^>]*>(.*?)</(?:td|dd|span)>', fragment, re.S)
    assert m, f"no data-figure={name!r}"
    text = re.sub(r"<[^>]+>", " ", m.group(1))
    return " ".join(html.unescape(text).split())
