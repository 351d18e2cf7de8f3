"""A hostile prompt is shown as plain text on both pages: no script runs, no template evaluates."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import log_in, png

pytestmark = pytest.mark.browser

HOSTILE = """<script>alert(1)</script> "double" 'single' <img src=x onerror=alert(2)> {{ 7*7 }} & ${7*7}"""


def test_hostile_prompt_is_plain_text_on_annotate_and_compare(page, researcher_api, make_user):
    training = researcher_api.prompt_set("hostile training", [HOSTILE])
    researcher_api.image(training, HOSTILE, png((10, 10, 10)))
    evaluation = researcher_api.prompt_set("hostile evaluation", [HOSTILE], purpose="evaluation")
    a = researcher_api.image(evaluation, HOSTILE, png((20, 20, 20)))
    b = researcher_api.image(evaluation, HOSTILE, png((30, 30, 30)))
    researcher_api.comparison(a, b)
    dialogs: list[Any] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    log_in(page, "/annotate", make_user("annotator"))
    for path, root in (("/annotate", "#rate-app"), ("/compare", "#compare-app")):
        if path != "/annotate":
            page.goto(path)
        page.wait_for_selector(f"{root}[data-shown]")
        assert page.text_content("#prompt") == HOSTILE, path
        assert page.locator("#prompt *").count() == 0, "the prompt must be one text node, no elements"
        assert "49" not in page.inner_text("body"), path
        assert page.locator("script:not([src])").count() == 0
    assert dialogs == []
