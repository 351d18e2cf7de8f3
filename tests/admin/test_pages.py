"""Every dashboard page renders with data, keeps to the CSP (no inline script, style or handlers),
and works on SQLite too (the embedded demo)."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import Job, JobLog, ModelVersion
from tests.admin import factories as f
from tests.conftest import browser_login

INLINE = re.compile(r"""<script(?![^>]*\bsrc=)[^>]*>|\sstyle=|\son[a-z]+=|javascript:""", re.I)


def seed(db: Session, user_ids: list[int]) -> dict[str, int]:
    now = utcnow()
    ps = f.prompt_set(db, "set <one>", k=2)
    p = f.prompt(db, ps, "two <i>dogs</i>", "count")
    images = [f.image(db, p, wanted=2) for _ in range(3)]
    for i, im in enumerate(images):
        for u in user_ids:
            f.rating(
                db,
                im,
                u,
                "good" if (i + u) % 3 else "bad",
                duration_ms=800 + 400 * i,
                at=now - timedelta(hours=i),
            )
    ev = f.evaluation(db, ps, "ev", votes=len(user_ids))
    c = f.comparison(db, ev, p, images[0], images[1])
    for u in user_ids:
        f.vote(db, c, u, "b", "tie", left_is_a=bool(u % 2))
    job = Job(
        kind="generate",
        state="failed",
        params={},
        scope_key="x",
        progress=12,
        error="boom <b>",
        trigger={"type": "auto", "new_labels": 9},
    )
    db.add(job)
    db.flush()
    db.add(JobLog(job_id=job.id, message="<script>alert(1)</script>", level="error"))
    db.add(
        ModelVersion(
            kind="reward",
            name="r",
            mode="mlp",
            artifact_url="x",
            metrics={"auc": 0.9, "history": [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}]},
        )
    )
    db.commit()
    return {"ev": ev.id, "c": c.id, "job": job.id}


def pages(ids: dict[str, int]) -> list[str]:
    return [
        "/admin",
        "/admin/annotators",
        "/admin/jobs",
        f"/admin/jobs/{ids['job']}",
        "/admin/models",
        "/admin/evaluations",
        f"/admin/evaluations/{ids['ev']}",
        f"/admin/comparisons/{ids['c']}",
    ]


def test_every_page_renders_and_keeps_to_the_csp(client, admin, db, make_user):
    ids = seed(db, [make_user("annotator").id for _ in range(3)])
    for url in pages(ids):
        r = client.get(url)
        assert r.status_code == 200, url
        assert not INLINE.search(r.text), (url, INLINE.search(r.text).group(0))
        assert "<script>alert" not in r.text and "<i>dogs" not in r.text  # untrusted text is escaped
        assert r.headers["cache-control"] == "no-store"


def test_pages_work_on_sqlite(tmp_path, settings):
    from app.auth import service as auth
    from app.auth.schemas import UserCreate
    from app.db import migrate
    from app.db.session import make_engine, make_sessionmaker
    from app.jobs.dispatch import RecordingDispatcher
    from app.main import create_app

    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    with factory() as s:
        users = [
            auth.create_user(s, UserCreate(username=f"u{i}", password="long-enough-1")) for i in range(3)
        ]
        auth.create_user(s, UserCreate(username="boss", password="long-enough-1", role="admin"))
        s.commit()
        ids = seed(s, [u.id for u in users])
    app = create_app(
        settings.model_copy(update={"database_url": url}),
        session_factory=factory,
        dispatcher=RecordingDispatcher(),
    )
    with TestClient(app) as c:
        browser_login(c, "boss", "long-enough-1")
        for page in pages(ids):
            assert c.get(page).status_code == 200, page
        overview = c.get("/admin").text
        assert overview.count('<rect class="bar"') == 3  # three hours with labels
        assert 'data-figure="median">1.20<' in c.get("/admin/annotators").text  # 0.8, 1.2, 1.6 s
    engine.dispose()
