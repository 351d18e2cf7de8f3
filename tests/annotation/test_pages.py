"""HTTP-level checks of the annotator pages: who may open them, what they load, and that they keep
the house rules (no inline script or style, no HTML built from data in JavaScript)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import CSRF_META, browser_login

ROOT = Path(__file__).resolve().parents[2]
PAGES = {"/annotate": "annotate.js", "/compare": "compare.js"}
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=", re.I)
STYLE_ATTR = re.compile(r"\sstyle\s*=", re.I)


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitor_gets_the_login_form_with_a_way_back(client, path):
    r = client.get(path, headers={"accept": "text/html"})
    assert r.status_code == 401
    assert 'action="/login"' in r.text
    assert f'name="next" value="{path}"' in r.text


@pytest.mark.parametrize("role", ["annotator", "researcher", "admin"])
@pytest.mark.parametrize("path", PAGES)
def test_every_role_from_annotator_up_gets_the_page(client, make_user, role, path):
    account = make_user(role)
    csrf = browser_login(client, account.username, account.password)
    r = client.get(path)
    assert r.status_code == 200
    assert CSRF_META.search(r.text).group(1) == csrf  # the page's fetches send it as X-CSRF-Token
    assert f'data-user="{account.id}"' in r.text
    scripts = re.findall(r'<script src="([^"]+)"></script>', r.text)
    assert scripts == ["/static/js/api.js", "/static/js/workbench.js", "/static/js/answer-page.js",
                       f"/static/js/{PAGES[path]}"]
    assert '<link rel="stylesheet" href="/static/css/annotate.css">' in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_have_no_inline_script_handlers_or_styles(client, make_user, path):
    account = make_user("annotator")
    browser_login(client, account.username, account.password)
    html = client.get(path).text
    assert not INLINE_SCRIPT.search(html)
    assert not INLINE_HANDLER.search(html)
    assert not STYLE_ATTR.search(html)


def test_filters_are_passed_through_to_the_page(client, make_user):
    account = make_user("annotator")
    browser_login(client, account.username, account.password)
    assert 'data-prompt-set-id="7"' in client.get("/annotate?prompt_set_id=7").text
    assert 'data-prompt-set-id=""' in client.get("/annotate").text
    assert 'data-evaluation-id="3"' in client.get("/compare?evaluation_id=3").text
    bad = client.get("/annotate?prompt_set_id=seven")
    assert bad.status_code == 422 and "prompt_set_id" in bad.text


@pytest.mark.parametrize("name", ["api.js", "workbench.js", "answer-page.js", "annotate.js", "compare.js"])
def test_scripts_are_served_and_never_build_html_from_strings(client, name):
    r = client.get(f"/static/js/{name}")
    assert r.status_code == 200
    assert "javascript" in r.headers["content-type"]
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in r.text, f"{name} uses {sink}"


def test_templates_keep_the_csp_rules():
    for template in (ROOT / "templates" / "annotation").glob("*.html"):
        text = template.read_text()
        assert not INLINE_SCRIPT.search(text), template.name
        assert not INLINE_HANDLER.search(text), template.name
        assert not STYLE_ATTR.search(text), template.name
