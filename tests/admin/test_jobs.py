"""Jobs page: list with trigger and progress, the JSON the page polls, log tail, cancel/retry via the API."""

from __future__ import annotations

from datetime import timedelta

from app.db.base import utcnow
from app.db.models import Job, JobLog
from tests.admin import factories as f
from tests.admin.html import block


def _job(db, ps, state="running", progress=42.5, **kw) -> Job:
    now = utcnow()
    j = Job(
        kind=kw.pop("kind", "generate"),
        state=state,
        params={"prompt_set_id": ps.id, "images_per_prompt": 2},
        prompt_set_id=ps.id,
        scope_key=kw.pop("scope_key", f"ps:{ps.id}"),
        progress=progress,
        progress_message=kw.pop("message", "batch 3 of 7"),
        started_at=now - timedelta(minutes=5),
        **kw,
    )
    db.add(j)
    db.flush()
    return j


def test_jobs_list_json_and_log_tail(client, admin, db):
    ps = f.prompt_set(db, "s")
    run = _job(db, ps, trigger={"type": "user", "user_id": admin.account.id})
    failed = _job(
        db,
        ps,
        state="failed",
        progress=10,
        scope_key="other",
        error="CUDA out of <memory>",
        trigger={"type": "auto", "reason": "new labels", "new_labels": 512},
    )
    for i in range(25):
        db.add(JobLog(job_id=run.id, message=f"line {i:02d}"))
    db.commit()

    page = client.get("/admin/jobs").text
    row = block(page, "data-job-id", str(run.id))
    assert '<progress max="100" value="42.5"' in row and "43%" in row and "batch 3 of 7" in row
    assert "Started by boss." in row
    assert (
        'data-job-action="cancel"' in row
        and f'data-job-action="retry" data-job-id="{run.id}" hidden' in row
    )
    frow = block(page, "data-job-id", str(failed.id))
    assert f'Started automatically by 512 new labels in prompt set <a href="/admin#set-{ps.id}">s</a>.' in frow
    assert "CUDA out of &lt;memory&gt;" in frow
    assert '<script src="/static/js/admin-jobs.js"' in page

    data = client.get("/admin/jobs.json").json()["jobs"]
    assert [j["id"] for j in data] == [failed.id, run.id]
    assert data[1] | {} == data[1] and data[1]["progress"] == 42.5 and data[1]["state"] == "running"
    assert (data[1]["cancellable"], data[1]["retryable"], data[0]["retryable"]) == (True, False, True)
    assert client.get(f"/admin/jobs.json?id={run.id}").json()["jobs"][0]["id"] == run.id

    detail = client.get(f"/admin/jobs/{run.id}").text
    assert "line 24" in detail and "line 05" in detail and "line 04" not in detail  # last 20 lines
    assert client.get("/admin/jobs/999999").status_code == 404


def test_cancel_and_retry_through_the_jobs_api(client, admin, db):
    ps = f.prompt_set(db, "s")
    f.image(db, f.prompt(db, ps, "two dogs", "count"))
    queued = _job(db, ps, state="queued", progress=0)
    db.commit()
    headers = {"X-CSRF-Token": admin.csrf}
    r = client.post(f"/api/v1/jobs/{queued.id}/cancel", headers=headers)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    row = client.get("/admin/jobs.json").json()["jobs"][0]
    assert (row["state"], row["retryable"], row["cancellable"]) == ("cancelled", True, False)
    r = client.post(f"/api/v1/jobs/{queued.id}/retry", headers=headers)
    assert r.status_code == 202
    new = client.get("/admin/jobs.json").json()["jobs"][0]
    assert (
        new["id"] == r.json()["id"]
        and new["state"] == "queued"
        and new["trigger"].startswith(f"Retry of job #{queued.id} by boss")
        and new["trigger_pieces"][1] == {"text": f"job #{queued.id}", "href": f"/admin/jobs/{queued.id}"}
    )
    # without the CSRF header the browser session cannot cancel
    assert client.post(f"/api/v1/jobs/{new['id']}/cancel").status_code == 403


def test_researcher_sees_jobs_without_buttons(researcher_client, db):
    ps = f.prompt_set(db, "s")
    _job(db, ps, state="failed")
    db.commit()
    page = researcher_client.get("/admin/jobs").text
    assert "data-job-id" in page and "data-job-action" not in page


def test_jobs_list_pages_past_the_first_hundred_and_filters(client, admin, db):
    ps = f.prompt_set(db, "s")
    made = [_job(db, ps, state="failed" if i % 10 == 0 else "succeeded", scope_key=f"k{i}",
                 kind="train_reward" if i % 2 else "generate") for i in range(130)]
    db.commit()
    ids = [j.id for j in made]  # ascending

    def rows(html: str) -> list[int]:
        import re

        return [int(m) for m in re.findall(r'<tr data-job-id="(\d+)"', html)]

    first = client.get("/admin/jobs").text
    assert rows(first) == ids[::-1][:100]
    older = f"/admin/jobs?before={ids[30]}"
    assert f'href="{older}"' in first and "Newest jobs" not in first
    second = client.get(older).text
    assert rows(second) == ids[::-1][100:]
    assert "Older jobs" not in second and "Newest jobs" in second and "30 older jobs" in second
    # the page polls its own rows
    assert [j["id"] for j in client.get(f"/admin/jobs.json?before={ids[30]}").json()["jobs"]] == ids[::-1][100:]
    assert f'data-query="&amp;before={ids[30]}"' in second

    failed = client.get("/admin/jobs?state=failed&kind=").text
    assert rows(failed) == [j.id for j in made[::-1] if j.state == "failed"]
    assert '<option value="failed" selected>' in failed and "Older jobs" not in failed
    both = client.get("/admin/jobs?state=failed&kind=generate").text
    assert rows(both) == [j.id for j in made[::-1] if j.state == "failed" and j.kind == "generate"]

    bad = client.get("/admin/jobs?state=<b>nope</b>")
    assert bad.status_code == 422 and "Unknown job state" in bad.text and "<b>nope" not in bad.text
    as_page_polls = client.get("/admin/jobs.json?kind=nope", headers={"Accept": "application/json"})
    assert as_page_polls.status_code == 422 and as_page_polls.json()["error"]["code"] == "invalid"
