"""What an annotator sees of an image and its prompt (issue 13, item 7): images smaller than their box
are enlarged with hard pixel edges, a click or Z shows them larger, and a 1,000-character prompt does not
push the image below the fold."""

from __future__ import annotations

import pytest

from tests.browser.conftest import log_in, png, screenshot, wait_until
from tests.browser.test_keyboard_and_layout import shown, stored

pytestmark = pytest.mark.browser


def test_small_images_are_pixelated_and_zoom_on_click(page, researcher_api, make_user, db):
    ps = researcher_api.prompt_set("tiny", ["two red dots", "three red dots"])
    researcher_api.image(ps, "two red dots", png((200, 30, 30), 2, size=(32, 24)))
    researcher_api.image(ps, "three red dots", png((200, 30, 30), 3, size=(2400, 1800)))
    annotator = make_user("annotator")
    log_in(page, "/annotate", annotator)
    seen = {}
    previous = None
    for _ in range(2):
        previous = shown(page, previous)
        img = page.locator("#task-image")
        natural = img.evaluate("i => i.naturalWidth")
        page.wait_for_function("small => document.getElementById('task-image').classList.contains('upscaled') "
                               "=== small", arg=natural == 32)
        seen[natural] = img.evaluate("i => getComputedStyle(i).imageRendering")
        if natural == 32:
            # a click opens it large; while open, rating keys do nothing; Escape closes
            img.click()
            dialog = page.locator("dialog.zoom")
            assert dialog.evaluate("d => d.open")
            big = dialog.locator("img")
            assert big.evaluate("i => i.getBoundingClientRect().width") > 10 * 32
            assert big.evaluate("i => getComputedStyle(i).imageRendering") == "pixelated"
            screenshot(page, "annotate-zoom")
            page.keyboard.press("g")
            page.keyboard.press("Escape")
            assert not dialog.evaluate("d => d.open")
            assert page.get_attribute("#rate-app", "data-shown") == previous and stored(db, annotator.id) == []
            page.keyboard.press("z")  # the keyboard way in
            assert dialog.evaluate("d => d.open")
            dialog.click()  # a click anywhere closes it
            assert not dialog.evaluate("d => d.open")
        page.keyboard.press("g")
    assert seen == {32: "pixelated", 2400: "auto"}  # large images keep smooth downscaling
    assert wait_until(lambda: len(stored(db, annotator.id)) == 2)


def test_a_thousand_character_prompt_keeps_the_image_in_view(page, researcher_api, make_user):
    long_text = ("two green dogs in a city, " * 40)[:1000]
    assert len(long_text) == 1000
    ps = researcher_api.prompt_set("long", [long_text, "two green dogs"])
    researcher_api.image(ps, long_text, png((30, 160, 30), 2))
    researcher_api.image(ps, "two green dogs", png((30, 160, 30), 2))
    page.set_viewport_size({"width": 1280, "height": 800})
    log_in(page, "/annotate", make_user("annotator"))
    tops = {}
    previous = None
    for _ in range(2):
        previous = shown(page, previous)
        prompt_len = len(page.locator("#prompt").inner_text())
        box = page.locator("#task-image").bounding_box()
        assert box is not None
        tops[prompt_len > 100] = box["y"]
        if prompt_len > 100:
            screenshot(page, "annotate-long-prompt")
            # most of the image is above the fold, and the whole prompt can still be read (it scrolls)
            assert box["y"] + box["height"] / 2 < 800, box
            assert page.locator("#prompt").evaluate("p => p.scrollHeight > p.clientHeight")
            assert page.locator("#prompt").get_attribute("tabindex") == "0"
        page.keyboard.press("g")
    assert tops[True] - tops[False] < 80, tops  # a few lines more than a short prompt, no more


def test_status_bar_shows_the_pool_and_my_share(page, researcher_api, make_user, db):
    ps = researcher_api.prompt_set("pool", ["two dogs", "three dogs"])
    researcher_api.image(ps, "two dogs", png((30, 30, 200), 2))
    researcher_api.image(ps, "three dogs", png((30, 30, 200), 3))
    annotator = make_user("annotator")
    log_in(page, f"/annotate?prompt_set_id={ps}", annotator)
    shown(page)
    text = page.locator("#pool-text")
    page.wait_for_selector("#pool:not([hidden])")
    assert text.inner_text() == "This set: 2 labels left of 2 · 0 done, 0 by you"
    assert page.locator("#pool-bar").evaluate("b => [b.value, b.max]") == [0, 2]
    page.keyboard.press("g")
    assert wait_until(lambda: len(stored(db, annotator.id)) == 1)
    page.reload()
    shown(page)
    page.wait_for_function("() => document.getElementById('pool-text').textContent.includes('1 done')")
    assert text.inner_text() == "This set: 1 label left of 2 · 1 done, 1 by you (100%)"
    assert page.locator("#pool-bar").evaluate("b => [b.value, b.max]") == [1, 2]
    screenshot(page, "annotate-pool")
