"""The dashboards in a real browser (Debian's chromium via Playwright): pages load with real data and
no CSP violations, figures match the database, the jobs page updates live, cancel and deactivate work.
Screenshots go to test-artifacts/screenshots/admin-*.png."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from playwright.sync_api import expect
from sqlalchemy import func, select

from app.db.base import utcnow
from app.db.models import Job, JobLog, ModelVersion, Rating, User
from tests.admin import factories as f

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture
def page(browser, live_server) -> Iterator[Any]:
    context = browser.new_context(base_url=live_server, viewport={"width": 1366, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_console(msg: Any) -> None:
        url = msg.location.get("url", "")
        if msg.type == "error" and not url.endswith("/favicon.ico"):  # the site has no icon; not ours
            errors.append(f"{msg.text} {url}")

    pg.on("console", on_console)
    pg.js_errors = errors
    yield pg
    context.close()


def _png(color: tuple[int, int, int]) -> bytes:
    im = PILImage.new("RGB", (64, 64), color)
    for i in range(64):
        im.putpixel((i, i), (255, 255, 255))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _seed(db, make_user, settings) -> dict[str, Any]:
    from app.storage import storage_for

    anns = [make_user("annotator", username=n) for n in ("ann", "bob", "cyd")]
    now = utcnow()
    ps = f.prompt_set(db, "colours and counts", k=3)
    prompts = [
        f.prompt(db, ps, t, c, s)
        for t, c, s in (
            ("two dogs", "count", "seen"),
            ("a green cat", "color", "seen"),
            ("a dog in the city", "background", "unseen"),
            ("two red cars on a beach", "combination", "unseen"),
        )
    ]
    for i in range(24):
        im = f.image(db, prompts[i % 4], wanted=3)
        for j, a in enumerate(anns[: 1 + i % 3]):
            label = ("good", "bad", "skip")[(i + j * (i % 2)) % 3] if a.username != "ann" else "good"
            f.rating(
                db,
                im,
                a.id,
                label,
                duration_ms=400 if a.username == "ann" else 2500 + 100 * i,
                at=now - timedelta(hours=(i * 7) % 160),
            )
    store = storage_for(settings.storage_url)
    a_img = f.image(db, prompts[0], storage_key="pairs/a.png")
    b_img = f.image(db, prompts[0], storage_key="pairs/b.png")
    store.put("pairs/a.png", _png((200, 60, 60)))
    store.put("pairs/b.png", _png((60, 160, 60)))
    base = ModelVersion(kind="generator", name="sd-1.5", mode="base", artifact_url="hub:sd15", metrics={})
    db.add(base)
    db.flush()
    db.add(
        ModelVersion(
            kind="generator",
            name="tuned",
            mode="lora",
            parent_id=base.id,
            artifact_url="s3://x",
            metrics={
                "final_loss": 0.31,
                "curve": [{"step": s, "loss": 0.6 * 0.97**s + 0.02 * (s % 3)} for s in range(0, 60, 2)],
            },
        )
    )
    db.add(
        ModelVersion(
            kind="reward",
            name="reward #1",
            mode="mlp",
            artifact_url="s3://r",
            metrics={
                "val_mse": 0.12,
                "auc": 0.88,
                "history": [
                    {"epoch": e, "train_loss": 0.7 / (e + 1), "val_mse": 0.25 - e * 0.03} for e in range(5)
                ],
            },
        )
    )
    ev = f.evaluation(db, ps, "tuned vs base", votes=3)
    pair = f.comparison(db, ev, prompts[0], a_img, b_img)
    for a, al, fi, left in zip(anns, ("b", "b", "tie"), ("a", "b", "b"), (True, False, True), strict=True):
        f.vote(db, pair, a.id, al, fi, left_is_a=left)
    run = Job(
        kind="generate",
        state="running",
        params={},
        prompt_set_id=ps.id,
        scope_key="a",
        progress=30,
        progress_message="batch 3 of 10",
        started_at=now,
        trigger={"type": "auto", "new_labels": 512},
    )
    queued = Job(
        kind="train_reward",
        state="queued",
        params={"prompt_set_id": ps.id},
        prompt_set_id=ps.id,
        scope_key="b",
        progress=0,
        progress_message="queued",
        trigger={"type": "user", "user_id": anns[0].id},
    )
    db.add_all([run, queued])
    db.flush()
    for i in range(25):
        db.add(JobLog(job_id=run.id, message=f"batch {i} done", level="warning" if i == 20 else "info"))
    db.commit()
    return {"ps": ps, "ev": ev, "pair": pair, "run": run, "queued": queued, "ann": anns[0]}


def _login(page, username: str, password: str) -> None:
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"admin-{name}.png"), full_page=True)


def test_admin_pages_in_the_browser(page, db, make_user, settings):
    data = _seed(db, make_user, settings)
    boss = make_user("admin", username="boss")
    _login(page, boss.username, boss.password)

    page.goto("/admin")
    done = db.scalar(select(func.count()).select_from(Rating).where(Rating.label != "skip"))
    total = page.locator(f'#set-{data["ps"].id} tr[data-category="total"] [data-figure="done"]')
    assert total.inner_text() == str(done)
    assert page.locator("svg.chart rect.bar").count() > 5
    _shot(page, "overview")

    page.goto("/admin/models")
    assert page.locator("figure.linechart polyline").count() == 3
    _shot(page, "models")

    page.goto(f"/admin/evaluations/{data['ev'].id}")
    assert page.locator('[data-figure="complete"]').inner_text() == "1 / 1"
    _shot(page, "evaluation")
    page.click(f'a[href="/admin/comparisons/{data["pair"].id}"]')
    page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
    _shot(page, "comparison")

    # live progress: the worker moves the job; the page follows without a reload
    page.goto("/admin/jobs")
    run, queued = data["run"], data["queued"]
    assert page.locator(f'tr[data-job-id="{run.id}"] [data-field="progress"]').inner_text() == "30%"
    db.execute(
        Job.__table__.update().where(Job.id == run.id).values(progress=77, progress_message="batch 8 of 10")
    )
    db.commit()
    expect(page.locator(f'tr[data-job-id="{run.id}"] [data-field="progress"]')).to_have_text("77%")
    assert page.locator(f'tr[data-job-id="{run.id}"] progress').evaluate("e => e.value") == 77
    # cancel the queued job through the jobs API (button -> confirm -> fetch with the CSRF header)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(f'tr[data-job-id="{queued.id}"] button[data-job-action="cancel"]')
    expect(page.locator(f'tr[data-job-id="{queued.id}"] [data-field="state"]')).to_have_text("cancelled")
    db.expire_all()
    assert db.get(Job, queued.id).state == "cancelled"
    # retry it: the API makes a new job, and the next poll adds its row without a reload
    page.click(f'tr[data-job-id="{queued.id}"] button[data-job-action="retry"]')
    expect(page.locator("#jobs-status")).to_contain_text("Retry queued as job #")
    new_id = db.scalar(select(func.max(Job.id)))
    expect(page.locator(f'tr[data-job-id="{new_id}"] [data-field="state"]')).to_have_text("queued")
    trigger = page.locator(f'tr[data-job-id="{new_id}"] [data-field="trigger"]').inner_text()
    assert f"Retry of job #{queued.id} by boss" in trigger
    _shot(page, "jobs")

    # the detail page follows its own job and shows the last 20 log lines
    page.click(f'a[href="/admin/jobs/{run.id}"]')
    assert page.locator("table.log tbody tr").count() == 20
    assert page.locator("table.log tbody tr").first.inner_text().endswith("batch 5 done")
    db.execute(Job.__table__.update().where(Job.id == run.id).values(progress=90))
    db.commit()
    expect(page.locator('[data-job-id] [data-field="progress"]')).to_have_text("90%")
    _shot(page, "job-detail")

    page.goto("/admin/annotators")
    assert "fast" in page.locator('tr[data-user="ann"] [data-figure="flags"]').inner_text()
    page.click('button[aria-label="Deactivate ann"]')
    page.wait_for_url("**/admin/annotators?notice=deactivated")
    assert page.locator('tr[data-user="ann"] [data-figure="status"]').inner_text() == "inactive"
    db.expire_all()
    assert db.scalar(select(User.is_active).where(User.id == data["ann"].id)) is False
    _shot(page, "annotators")
    assert page.js_errors == []


def test_researcher_view_is_read_only(page, db, make_user, settings):
    data = _seed(db, make_user, settings)
    rita = make_user("researcher", username="rita")
    _login(page, rita.username, rita.password)
    page.goto("/admin/jobs")
    assert page.locator(f'tr[data-job-id="{data["run"].id}"]').is_visible()
    assert page.locator("button[data-job-action]").count() == 0
    page.goto("/admin/annotators")
    assert page.locator("td.actions, form[action^='/admin/users']").count() == 0
    _shot(page, "annotators-researcher")
    assert page.js_errors == []
