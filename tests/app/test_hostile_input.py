"""Hostile input found by fuzzing (issue #11, items 6 and 12): every bad value gets a 4xx JSON
error `{"error": {"code", "message"}}` a person can act on, never a 500, and nothing already
stored is lost or changed.

The id checks walk the route table, so a new route is covered without being listed here.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from PIL import ImageFile
from sqlalchemy import text

from app.fields import INT32_MAX, INT64_MAX, MAX_JSON_DEPTH
from app.images.service import MAX_SIDE
from app.jobs.schemas import PARAMS_BY_KIND
from tests.annotation.conftest import hot_answered, make_pool, png_bytes, use_engine
from tests.conftest import Account, bearer, browser_login

TABLES = ("user_account", "api_token", "prompt_set", "prompt", "image", "rating_assignment", "rating",
          "comparison", "model_version", "job")
BIG = (2**63, 2**64, -(2**63) - 1)  # one past BIGINT either way, and far past it


@pytest.fixture
def api(app) -> Iterator[TestClient]:
    """A client that shows a server error as the 500 a user would get (with the route in the
    assertion message) rather than raising it."""
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def admin(make_user) -> Account:
    return make_user("admin")


def _counts(db) -> dict[str, int]:
    db.rollback()  # a fresh snapshot
    return {t: db.scalar(text(f"SELECT count(*) FROM {t}")) for t in TABLES}


def _error(r, status: int | tuple[int, ...], *words: str) -> str:
    """The response is the JSON error wanted; returns its message."""
    statuses = (status,) if isinstance(status, int) else status
    said = f"{r.request.method} {r.request.url} -> {r.status_code} {r.text[:300]}"
    assert r.status_code in statuses, said
    assert r.headers.get("content-type", "").startswith("application/json"), said
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    message = body["error"]["message"]
    assert message and "Something went wrong" not in message
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    return message


def _api_routes(app) -> Iterator[tuple[str, str, APIRoute]]:
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute):
            for method in sorted(route.methods):
                yield method, route.path, route


def _is_int(annotation: Any) -> bool:
    return annotation is int or annotation == int | None


# ---------------------------------------------------------------------------------------------
# 1. ids and offsets past BIGINT, in the path and the query of every route


# routes that need a body to get as far as looking their id up (a new one shows up in the test)
SAMPLE_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/api/v1/images/{image_id}"): {"json": {"gold_label": None}},
    ("POST", "/admin/users/{user_id}/active"): {"data": {"active": "false"}},
    ("POST", "/admin/users/{user_id}/role"): {"data": {"role": "annotator"}},
}


OTHER_PARAMS = {"side": "left"}


def test_every_int_path_parameter_past_bigint_gets_404(app, api, admin, researcher, db):
    """~20 routes answered 500 (Postgres: bigint out of range) for /…/9223372036854775808."""
    make_pool(api, researcher, n_images=1)
    before = _counts(db)
    checked = set()
    for method, path, route in _api_routes(app):
        names = [f.name for f in route.dependant.path_params if _is_int(f.field_info.annotation)]
        if not names:
            continue
        for big in (*BIG, INT64_MAX):
            # int parameters get the number; others (a side, a format) a value of their own
            values = {name: str(big) for name in names}
            url = re.sub(r"\{([^}]+)\}", lambda m, v=values: v.get(m.group(1)) or OTHER_PARAMS[m.group(1)], path)
            r = api.request(method, url, headers=bearer(admin), **SAMPLE_BODIES.get((method, path), {"json": {}}))
            if big == INT64_MAX:  # the largest id is just one that does not exist: the route's own 404
                assert r.status_code == 404, f"{method} {url} -> {r.status_code} {r.text[:300]}"
                continue
            message = _error(r, 404)
            assert str(big) in message and names[0] in message, (method, path, message)
        checked.add((method, path))
    assert len(checked) >= 20, checked
    assert _counts(db) == before


def test_every_int_query_parameter_past_bigint_gets_422(app, api, admin, researcher, db):
    ps = make_pool(api, researcher, n_images=1).prompt_set_id
    before = _counts(db)
    checked = []
    for method, path, route in [*_api_routes(app)]:
        if method != "GET":
            continue
        names = [f.name for f in route.dependant.query_params if _is_int(f.field_info.annotation)]
        if path == "/api/v1/rating-tasks/next":  # parses its query itself, after the caller
            names = ["prompt_set_id", "prefetch"]
        url = re.sub(r"\{[^}]+\}", str(ps), path)
        for name in names:
            for big in BIG:
                r = api.get(url, params={name: str(big)}, headers=bearer(admin))
                _error(r, 422, name)
            checked.append((path, name))
    assert len(checked) >= 12, checked
    assert ("/api/v1/prompt-sets/{prompt_set_id}/prompts", "offset") in checked
    assert _counts(db) == before


# ---------------------------------------------------------------------------------------------
# 2. null in a PATCH


def test_patch_prompt_set_refuses_null_and_keeps_the_stored_values(api, researcher, db):
    h = bearer(researcher)
    created = api.post("/api/v1/prompt-sets", headers=h, json={
        "name": "keep", "prompts": ["Two dogs"], "description": "d", "labels_per_image": 3, "gold_rate": 0.1,
        "lease_seconds": 120, "retrain_threshold": 50, "auto_chain": {"finetune": {"mode": "lora"}}}).json()
    url = f"/api/v1/prompt-sets/{created['id']}"
    for field in ("description", "labels_per_image", "gold_rate", "lease_seconds", "auto_chain"):
        _error(api.patch(url, headers=h, json={field: None}), 422, field, "must not be null", "leave the field out")
        _error(api.patch(url, headers=h, json={"description": "changed", field: None}), 422, field)
    stored = api.get(url, headers=h).json()
    for field in ("description", "labels_per_image", "gold_rate", "lease_seconds", "retrain_threshold", "auto_chain"):
        assert stored[field] == created[field], field
    # a field left out is kept; null where it means something (no automatic retraining) is taken
    off = api.patch(url, headers=h, json={"retrain_threshold": None})
    assert off.status_code == 200 and off.json()["retrain_threshold"] is None
    assert off.json()["labels_per_image"] == 3 and off.json()["description"] == "d"


# ---------------------------------------------------------------------------------------------
# 3. NUL characters in text


def test_nul_characters_are_refused_wherever_text_is_accepted(app, api, admin, researcher, db):
    h = bearer(researcher)
    pool = make_pool(api, researcher, n_images=1)
    url = f"/api/v1/prompt-sets/{pool.prompt_set_id}"
    csv_file = {"file": ("p.csv", b"text\nTwo dogs\nbad\x00prompt\n", "text/csv")}
    jsonl_file = {"file": ("p.jsonl", b'"Two dogs"\n{"text": "bad\\u0000prompt"}\n', "text/plain")}
    ok_file = {"file": ("p.jsonl", b'"Two dogs"\n', "text/plain")}
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/api/v1/prompt-sets", {"json": {"name": "a\x00b", "prompts": ["x"]}}, "name"),
        ("POST", "/api/v1/prompt-sets", {"json": {"name": "a", "description": "\x00", "prompts": ["x"]}},
         "description"),
        ("POST", "/api/v1/prompt-sets", {"json": {"name": "a", "prompts": ["ok", "b\x00d"]}}, "prompts.1"),
        ("POST", "/api/v1/prompt-sets", {"json": {"name": "a", "prompts": ["x"], "auto_chain": {"k": ["\x00"]}}},
         "auto_chain"),
        ("POST", "/api/v1/prompt-sets", {"json": {"name": "a", "prompts": ["x"], "auto_chain": {"k\x00": 1}}},
         "auto_chain"),
        ("PATCH", url, {"json": {"description": "d\x00"}}, "description"),
        ("PATCH", url, {"json": {"auto_chain": {"finetune": {"mode": "\x00"}}}}, "finetune.mode"),
        ("POST", "/api/v1/prompt-sets/upload", {"files": csv_file, "data": {"name": "csv"}}, "prompts.1"),
        ("POST", "/api/v1/prompt-sets/upload", {"files": jsonl_file, "data": {"name": "jsonl"}}, "prompts.1"),
        ("POST", "/api/v1/prompt-sets/upload", {"files": ok_file, "data": {"name": "n\x00"}}, "name"),
        ("POST", "/api/v1/prompt-sets/upload", {"files": ok_file, "data": {"name": "n", "description": "\x00"}},
         "description"),
        ("POST", "/api/v1/images", {"files": {"file": ("x.png", png_bytes(9), "image/png")},
                                    "data": {"prompt_set_id": str(pool.prompt_set_id), "prompt": "Two\x00dogs"}},
         "prompt"),
        ("POST", "/api/v1/models", {"json": {"kind": "reward", "mode": "mlp", "name": "r\x00", "artifact_url": "x"}},
         "name"),
        ("POST", "/api/v1/models", {"json": {"kind": "reward", "mode": "mlp", "name": "r", "artifact_url": "x",
                                             "metrics": {"note": "\x00"}}}, "metrics"),
        ("POST", "/api/v1/jobs", {"json": {"kind": "generate", "params": {
            "prompt_set_id": pool.prompt_set_id, "images_per_prompt": 1, "sampler": {"scheduler": "dd\x00im"}}}},
         "params"),
        # the auth schemas: refused by the net under every route (app/errors.py: refused_value)
        ("POST", "/api/v1/tokens", {"json": {"name": "t\x00"}}, ""),
    ]
    before = _counts(db)
    for method, where, kwargs, field in cases:
        _error(api.request(method, where, headers=h, **kwargs), 422, field, "NUL")
    for method, where, kwargs in [
        ("POST", "/api/v1/users",
         {"json": {"username": "newbie", "password": "long-enough-1", "display_name": "\x00"}}),
        ("PATCH", f"/api/v1/users/{researcher.id}", {"json": {"display_name": "x\x00"}}),
    ]:
        _error(api.request(method, where, headers=bearer(admin), **kwargs), 422, "NUL")
    csrf = browser_login(api, researcher.username, researcher.password)  # bearer calls above win over it
    r = api.post("/account/tokens", data={"name": "t\x00", "csrf_token": csrf}, headers={"accept": "application/json"})
    _error(r, 422, "NUL")
    assert _counts(db) == before
    stored = api.get(url, headers=h).json()
    assert stored["description"] == "" and stored["auto_chain"] == {}


# ---------------------------------------------------------------------------------------------
# 4. integers past their column


def _integer_schemas_without_maximum(schema: Any, defs: dict[str, Any], where: str, seen: set[str]) -> Iterator[str]:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if ref:
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                yield from _integer_schemas_without_maximum(defs[name], defs, name, seen)
            return
        if schema.get("type") == "integer" and "maximum" not in schema and "exclusiveMaximum" not in schema:
            yield where
        for key, value in schema.items():
            yield from _integer_schemas_without_maximum(value, defs, f"{where}.{key}", seen)
    elif isinstance(schema, list):
        for item in schema:
            yield from _integer_schemas_without_maximum(item, defs, where, seen)


def test_every_integer_a_request_body_accepts_has_an_upper_bound(app):
    """Found: retrain_threshold 3000000000 (an INTEGER column) was a 500. Every integer of every
    request body (JSON or form) and of every job's params is bounded by its column."""
    openapi = app.openapi()
    defs = openapi["components"]["schemas"]
    unbounded = []
    for path, operations in openapi["paths"].items():
        for method, op in operations.items():
            for content in op.get("requestBody", {}).get("content", {}).values():
                unbounded += [f"{method.upper()} {path}: {w}" for w in
                              _integer_schemas_without_maximum(content["schema"], defs, "body", set())]
    for kind, model in PARAMS_BY_KIND.items():
        schema = model.model_json_schema()
        unbounded += [f"job {kind}: {w}" for w in
                      _integer_schemas_without_maximum(schema, schema.get("$defs", {}), "params", set())]
    assert not unbounded, unbounded


def test_integers_past_their_column_get_422_naming_the_field(api, researcher, make_user, db):
    h = bearer(researcher)
    pool = make_pool(api, researcher, n_images=2)
    url = f"/api/v1/prompt-sets/{pool.prompt_set_id}"
    annotator = make_user("annotator")
    too_big = INT32_MAX + 1
    ok_file = {"file": ("p.jsonl", b'"Two dogs"\n', "text/plain")}
    before = _counts(db)
    cases: list[tuple[str, str, dict[str, Any], Account, str]] = [
        ("POST", "/api/v1/prompt-sets", {"json": {"name": "b", "prompts": ["x"], "retrain_threshold": 3_000_000_000}},
         researcher, "retrain_threshold"),
        ("PATCH", url, {"json": {"retrain_threshold": too_big}}, researcher, "retrain_threshold"),
        ("POST", "/api/v1/prompt-sets/upload",
         {"files": ok_file, "data": {"name": "u", "retrain_threshold": str(too_big)}}, researcher, "retrain_threshold"),
        ("POST", "/api/v1/prompt-sets", {"json": {"name": "t", "template": {"size": 3, "seed": 2**63}}},
         researcher, "template.seed"),
        ("POST", "/api/v1/images", {"files": {"file": ("x.png", png_bytes(7), "image/png")}, "data": {
            "prompt_set_id": str(pool.prompt_set_id), "prompt": "x", "seed": str(2**63)}}, researcher, "seed"),
        ("POST", "/api/v1/images", {"files": {"file": ("x.png", png_bytes(8), "image/png")},
                                    "data": {"prompt_set_id": str(2**63), "prompt": "x"}}, researcher, "prompt_set_id"),
        ("POST", "/api/v1/ratings", {"json": {"assignment_id": 2**63, "label": "good"}}, annotator, "assignment_id"),
        ("POST", "/api/v1/comparison-votes", {"json": {"assignment_id": 2**63, "alignment": "left",
                                                       "fidelity": "left"}}, annotator, "assignment_id"),
        ("POST", "/api/v1/comparisons", {"json": {"image_a_id": pool.image_ids[0], "image_b_id": 2**63}},
         researcher, "image_b_id"),
        ("POST", "/api/v1/jobs", {"json": {"kind": "train_reward", "params": {"prompt_set_id": 2**63}}},
         researcher, "params.prompt_set_id"),
        ("POST", "/api/v1/jobs", {"json": {"kind": "generate", "params": {
            "prompt_set_id": pool.prompt_set_id, "images_per_prompt": 2, "base_seed": INT64_MAX}}},
         researcher, "params.base_seed"),
        ("POST", "/api/v1/models", {"json": {"kind": "reward", "mode": "mlp", "name": "r", "artifact_url": "x",
                                             "parent_id": 2**64}}, researcher, "parent_id"),
    ]
    for method, where, kwargs, who, field in cases:
        _error(api.request(method, where, headers=bearer(who), **kwargs), 422, field)
    assert _counts(db) == before
    assert api.get(url, headers=h).json()["retrain_threshold"] is None


# ---------------------------------------------------------------------------------------------
# 5. decompression bombs and images too large to embed


def _claiming(fmt: str, width: int, height: int) -> bytes:
    """A small real image whose header is rewritten to claim width × height pixels."""
    data = png_bytes(1, fmt=fmt)
    if fmt == "PNG":  # signature (8), IHDR length (4), then "IHDR" + width + height + ..., CRC over type + data
        chunk = bytearray(data[12:29])
        struct.pack_into(">II", chunk, 4, width, height)
        return data[:12] + bytes(chunk) + struct.pack(">I", zlib.crc32(chunk)) + data[33:]
    sof = data.index(b"\xff\xc0")  # baseline frame header: marker, length, precision, height, width
    return data[:sof + 5] + struct.pack(">HH", height, width) + data[sof + 9:]


@pytest.mark.parametrize("fmt,width,height", [
    ("PNG", 20000, 20000),  # past PIL's own bomb guard: open() itself refuses it
    ("JPEG", 60000, 60000),
    ("PNG", 8000, 8000),  # under PIL's guard, over ours: 1.2 GB to embed
    ("PNG", 65535, 1),
    ("JPEG", MAX_SIDE + 1, 16),
])
def test_images_too_large_to_decode_are_refused_from_their_header(api, researcher, db, monkeypatch, fmt, width, height):
    pool = make_pool(api, researcher, n_images=1)
    before = _counts(db)

    def decoded(*args, **kwargs):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decoded)
    r = api.post("/api/v1/images", headers=bearer(researcher),
                 files={"file": ("big", _claiming(fmt, width, height), "image/png")},
                 data={"prompt_set_id": str(pool.prompt_set_id), "prompt": "Two dogs"})
    _error(r, (413, 422), str(MAX_SIDE), "pixels")
    assert _counts(db) == before


def test_an_image_at_the_side_limit_is_accepted(api, researcher):
    pool = make_pool(api, researcher, n_images=0)
    buf = io.BytesIO()
    PILImage.new("L", (MAX_SIDE, 8), 7).save(buf, "PNG")
    r = api.post("/api/v1/images", headers=bearer(researcher),
                 files={"file": ("edge.png", buf.getvalue(), "image/png")},
                 data={"prompt_set_id": str(pool.prompt_set_id), "prompt": "Two dogs"})
    assert r.status_code == 201 and r.json()["width"] == MAX_SIDE


# ---------------------------------------------------------------------------------------------
# 6. deeply nested JSON


def test_deeply_nested_json_gets_a_4xx(api, researcher, make_user, db):
    make_pool(api, researcher, n_images=1)
    annotator = make_user("annotator")
    deep_list = ("[" * 100_000 + "]" * 100_000).encode()
    deep_object = ('{"a":' * 100_000 + "1" + "}" * 100_000).encode()
    json_header = {"content-type": "application/json"}
    before = _counts(db)
    for where, who in [("/api/v1/ratings", annotator), ("/api/v1/prompt-sets", researcher),
                       ("/api/v1/jobs", researcher), ("/api/v1/comparison-votes", annotator)]:
        for body in (deep_list, deep_object):
            r = api.post(where, headers={**bearer(who), **json_header}, content=body)
            _error(r, (400, 422), "nested too deeply")
    # shallow enough to parse, too deep to store and read back (it was stored, then every read failed)
    nested: Any = {"mode": "lora"}
    for _ in range(300):
        nested = {"next": nested}
    r = api.post("/api/v1/prompt-sets", headers=bearer(researcher),
                 json={"name": "deep", "prompts": ["x"], "auto_chain": nested})
    _error(r, 422, "auto_chain", f"deeper than {MAX_JSON_DEPTH} levels")
    r = api.post("/api/v1/prompt-sets/upload", headers=bearer(researcher), data={"name": "deep"},
                 files={"file": ("p.jsonl", b'"ok"\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n", "text/plain")})
    _error(r, 422, "line 2", "nested too deeply")
    r = api.post("/api/v1/prompt-sets", headers={**bearer(researcher), **json_header},
                 content=b'{"name": "nan", "prompts": ["x"], "auto_chain": {"a": NaN}}')
    _error(r, 422, "auto_chain", "finite")
    assert _counts(db) == before


# ---------------------------------------------------------------------------------------------
# 7. a CSV field past the csv module's limit


def test_csv_field_past_the_csv_limit_gets_422_naming_the_limit(api, researcher, db):
    before = _counts(db)
    content = b"text\nTwo dogs\n" + b"a" * 140_000 + b"\n"
    r = api.post("/api/v1/prompt-sets/upload", headers=bearer(researcher), data={"name": "huge"},
                 files={"file": ("p.csv", content, "text/csv")})
    _error(r, 422, "131072", "line 3")
    assert _counts(db) == before
    assert api.get("/api/v1/prompt-sets", headers=bearer(researcher)).json() == []


# ---------------------------------------------------------------------------------------------
# 8. a form-encoded rating from a browser session


@pytest.fixture(params=["hot", "route", "portable"])
def loop_mode(request, settings, monkeypatch) -> str:
    """The three implementations of the annotation loop (see tests/annotation/test_hot_path.py)."""
    use_engine(request.param, settings, monkeypatch)
    return str(request.param)


def test_form_encoded_rating_gets_403_or_415_not_stream_consumed(loop_mode, app, api, researcher, make_user, db):
    make_pool(api, researcher, n_images=1)
    annotator = make_user("annotator")
    browser = api
    csrf = browser_login(browser, annotator.username, annotator.password)
    task = browser.get("/api/v1/rating-tasks/next", headers={"X-CSRF-Token": csrf}).json()
    form = {"assignment_id": str(task["assignment_id"]), "label": "good"}
    before = _counts(db)

    _error(browser.post("/api/v1/ratings", data=form), 403, "security token")  # cross-site forms stop here
    _error(browser.post("/api/v1/ratings", data={**form, "csrf_token": csrf}), 415, "JSON")
    _error(browser.post("/api/v1/ratings", data=form, headers={"x-csrf-token": csrf}), 415, "JSON")
    _error(browser.post("/api/v1/ratings", files={"f": ("a", b"b")}, data={**form, "csrf_token": csrf}), 415, "JSON")
    _error(api.post("/api/v1/ratings", data=form, headers=bearer(annotator)), 415, "application/json")
    assert _counts(db) == before

    ok = browser.post("/api/v1/ratings", json={"assignment_id": task["assignment_id"], "label": "good"},
                      headers={"x-csrf-token": csrf})
    assert ok.status_code == 201, ok.text
    assert _counts(db)["rating"] == before["rating"] + 1
    assert (hot_answered(app) > 0) == (loop_mode == "hot")
