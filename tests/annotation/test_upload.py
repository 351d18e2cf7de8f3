"""POST /images: only real PNG / JPEG / WebP, size-limited, idempotent; files only for logged-in users."""

from __future__ import annotations

import io

from sqlalchemy import func, select

from app.db.models import Image, Prompt
from tests.annotation.conftest import make_pool, png_bytes
from tests.conftest import bearer


def _upload(client, acct, data, *, ps, prompt="Two dogs", name="x.png", ctype="image/png", **extra):
    return client.post(
        "/api/v1/images",
        headers=bearer(acct),
        files={"file": (name, data, ctype)},
        data={"prompt_set_id": str(ps), "prompt": prompt, **extra},
    )


def test_formats_sizes_and_idempotency(client, researcher, db, settings):
    pool = make_pool(client, researcher, n_images=0)
    ps = pool.prompt_set_id
    r = _upload(client, researcher, png_bytes(1), ps=ps, seed="42")
    assert r.status_code == 201
    body = r.json()
    assert body["mime_type"] == "image/png" and body["seed"] == 42 and body["width"] == 16
    again = _upload(client, researcher, png_bytes(1), ps=ps, seed="42")
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert (
        _upload(client, researcher, png_bytes(2, fmt="JPEG"), ps=ps, name="a.jpg").json()["mime_type"] == "image/jpeg"
    )
    assert _upload(client, researcher, png_bytes(3, fmt="WEBP"), ps=ps).json()["mime_type"] == "image/webp"

    gif = _upload(client, researcher, png_bytes(4, fmt="GIF"), ps=ps)
    assert gif.status_code == 415 and "PNG, JPEG or WebP" in gif.json()["error"]["message"]
    fake = _upload(client, researcher, b"<html>not an image</html>", ps=ps)
    assert fake.status_code == 415
    truncated = _upload(client, researcher, png_bytes(5)[:40], ps=ps)
    assert truncated.status_code == 415
    empty = _upload(client, researcher, b"", ps=ps)
    assert empty.status_code == 422
    missing_set = _upload(client, researcher, png_bytes(6), ps=999)
    assert missing_set.status_code == 404
    no_prompt = client.post(
        "/api/v1/images",
        headers=bearer(researcher),
        files={"file": ("x.png", png_bytes(7), "image/png")},
        data={"prompt_set_id": str(ps)},
    )
    assert no_prompt.status_code == 422 and "prompt" in no_prompt.json()["error"]["message"]
    # nothing was stored by the refused uploads
    assert db.scalar(select(func.count()).select_from(Image)) == 3


def test_upload_limit(client, researcher, app):
    pool = make_pool(client, researcher, n_images=0)
    app.state.settings.max_upload_bytes = 2000
    import os

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(buf, "PNG")  # noise: incompressible
    big = buf.getvalue()
    assert len(big) > 2000
    r = _upload(client, researcher, big, ps=pool.prompt_set_id)
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]


def test_new_prompt_text_is_added_and_parsed(client, researcher, db):
    pool = make_pool(client, researcher, n_images=0)
    r = _upload(client, researcher, png_bytes(1), ps=pool.prompt_set_id, prompt="Three   red boxes")
    assert r.status_code == 201
    p = db.scalar(select(Prompt).where(Prompt.text == "Three red boxes"))
    assert p.category == "combination" and p.attributes["count"] == 3 and p.attributes["color"] == "red"


def test_image_files_need_a_login_and_have_the_right_type(client, researcher, make_user):
    pool = make_pool(client, researcher, n_images=1)
    url = f"/api/v1/images/{pool.image_ids[0]}/file"
    assert client.get(url).status_code == 401
    rater = make_user("annotator")
    assert client.get(url, headers=bearer(rater)).status_code == 404  # not given to them (yet)
    assert client.get("/api/v1/rating-tasks/next", headers=bearer(rater)).json()["image_url"] == url
    r = client.get(url, headers=bearer(rater))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-content-type-options"] == "nosniff" and r.content == png_bytes(0)
    assert client.get("/api/v1/images/999/file", headers=bearer(researcher)).status_code == 404
    assert client.get("/api/v1/images/..%2F..%2Fetc%2Fpasswd/file", headers=bearer(researcher)).status_code in (
        404,
        422,
    )


def test_annotators_cannot_upload(client, researcher, make_user):
    pool = make_pool(client, researcher, n_images=0)
    r = _upload(client, make_user("annotator"), png_bytes(1), ps=pool.prompt_set_id)
    assert r.status_code == 403
