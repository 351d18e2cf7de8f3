"""What a new admin stumbled on (issue 13, item 8), in a real browser: a job's trigger as a sentence with
links, Cancel that asks first, navigation on the 404 page, and an evaluation page that fits a 375 px phone."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from app.db.base import utcnow
from app.db.models import Job
from tests.admin import factories as f
from tests.admin.test_browser import _login, page  # noqa: F401 - the page fixture (errors collected)

pytestmark = pytest.mark.browser


def _jobs(db, ps) -> dict[str, Job]:
    auto = {"type": "auto", "reason": "new labels", "new_labels": 512, "threshold": 384,
            "since_rating_id": 10, "since_reward_version_id": None}
    reward = Job(kind="train_reward", state="succeeded", params={}, prompt_set_id=ps.id, scope_key="r",
                 progress=100, trigger=auto, finished_at=utcnow())
    db.add(reward)
    db.flush()
    tune = Job(kind="finetune", state="succeeded", params={}, prompt_set_id=ps.id, scope_key="t", progress=100,
               trigger={"type": "chain", "after_job": reward.id, "after_kind": "train_reward", "root": auto})
    db.add(tune)
    db.flush()
    evaluate = Job(kind="evaluate", state="queued", params={}, prompt_set_id=ps.id, scope_key="e", progress=0,
                   trigger={"type": "chain", "after_job": tune.id, "after_kind": "finetune",
                            "root": dict(tune.trigger)})
    f.image(db, f.prompt(db, ps, "two dogs", "count"))
    again = Job(kind="train_reward", state="queued", params={"prompt_set_id": ps.id}, prompt_set_id=ps.id,
                scope_key="again", progress=0, trigger={"type": "user", "user_id": None})
    db.add_all([evaluate, again])
    db.commit()
    return {"reward": reward, "tune": tune, "evaluate": evaluate, "again": again}


def test_trigger_reads_as_a_sentence_with_links_and_cancel_asks_first(page, db, make_user):  # noqa: F811
    ps = f.prompt_set(db, "demo <i>set</i>")
    jobs = _jobs(db, ps)
    boss = make_user("admin", username="boss")
    _login(page, boss.username, boss.password)
    page.goto("/admin/jobs")

    ev = jobs["evaluate"]
    cell = page.locator(f'tr[data-job-id="{ev.id}"] [data-field="trigger"]')
    text = cell.inner_text()
    assert text == (f"Follows finetune job #{jobs['tune'].id}, in a chain started automatically by 512 new "
                    "labels (threshold 384) in prompt set demo <i>set</i>.")
    assert "=" not in text and "None" not in text and "was:" not in text  # no internals
    assert cell.locator("a").first.get_attribute("href") == f"/admin/jobs/{jobs['tune'].id}"
    assert cell.locator("a").nth(1).get_attribute("href") == f"/admin#set-{ps.id}"
    auto = page.locator(f'tr[data-job-id="{jobs["reward"].id}"] [data-field="trigger"]').inner_text()
    assert auto.startswith("Started automatically by 512 new labels (threshold 384)")

    # Cancel asks first; saying no leaves the job alone
    ev = jobs["again"]
    asked: list[str] = []

    def dismiss(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.click(f'tr[data-job-id="{ev.id}"] button[data-job-action="cancel"]')
    expect(page.locator("#jobs-status")).to_have_text(f"Job #{ev.id} was not cancelled.")
    assert asked and f"Cancel job #{ev.id}?" in asked[0]
    db.expire_all()
    assert db.get(Job, ev.id).state == "queued"

    page.once("dialog", lambda d: d.accept())
    page.click(f'tr[data-job-id="{ev.id}"] button[data-job-action="cancel"]')
    expect(page.locator(f'tr[data-job-id="{ev.id}"] [data-field="state"]')).to_have_text("cancelled")

    # a retry appears by polling; its row (built by the script) links the job it retries
    page.click(f'tr[data-job-id="{ev.id}"] button[data-job-action="retry"]')
    expect(page.locator("#jobs-status")).to_contain_text("Retry queued as job #")
    new_row = page.locator("#jobs-table tbody tr").first
    expect(new_row.locator('[data-field="trigger"]')).to_contain_text(f"Retry of job #{ev.id} by boss")
    assert new_row.locator('[data-field="trigger"] a').first.get_attribute("href") == f"/admin/jobs/{ev.id}"

    page.click(f'a[href="/admin/jobs/{jobs["evaluate"].id}"] >> nth=0')
    expect(page.locator('dd[data-field="trigger"] a').first).to_have_attribute(
        "href", f"/admin/jobs/{jobs['tune'].id}")
    assert page.js_errors == []


def test_not_found_page_has_navigation(page, make_user):  # noqa: F811
    page.goto("/no/such/page")
    nav = page.get_by_role("navigation", name="Where to go from here")
    expect(nav.get_by_role("link", name="Log in")).to_be_visible()

    boss = make_user("admin", username="boss")
    _login(page, boss.username, boss.password)
    response = page.goto("/no/such/page")
    assert response is not None and response.status == 404
    nav = page.get_by_role("navigation", name="Where to go from here")
    for name in ("Start page", "Rate images", "Compare pairs", "Dashboard"):
        expect(nav.get_by_role("link", name=name)).to_be_visible()
    # and the usual top bar of a logged-in page
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard")).to_be_visible()
    page.get_by_role("navigation", name="Where to go from here").get_by_role("link", name="Dashboard").click()
    page.wait_for_url("**/admin")
    assert [e for e in page.js_errors if "status of 404" not in e] == []  # the 404 itself is logged


def test_evaluation_page_fits_a_phone(browser, live_server, db, make_user):
    raters = [make_user("annotator", username=f"r{i}") for i in range(3)]
    ps = f.prompt_set(db, "eval", purpose="evaluation")
    long_prompt = f.prompt(db, ps, "two " + "very " * 60 + "green dogs in a city", "combination", "unseen")
    ev = f.evaluation(db, ps, "a fairly long evaluation name that goes on, fine-tuned-model-v2-vs-base", votes=3)
    for _ in range(3):
        c = f.comparison(db, ev, long_prompt, f.image(db, long_prompt), f.image(db, long_prompt))
        for u in raters:
            f.vote(db, c, u.id, "b", "tie")
    db.commit()
    boss = make_user("admin", username="boss")
    context = browser.new_context(base_url=live_server, viewport={"width": 375, "height": 800})
    try:
        pg = context.new_page()
        _login(pg, boss.username, boss.password)
        pg.goto(f"/admin/evaluations/{ev.id}")
        expect(pg.locator('[data-figure="complete"]')).to_have_text("3 / 3")
        widths = pg.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1] == 375, widths
        # wide tables scroll inside their own box instead of the page
        for table in ("table.results", "table.pairs"):
            assert pg.locator(table).evaluate("t => t.closest('.table-wrap') !== null"), table
    finally:
        context.close()
