"""Storage through fsspec: a local folder, or an object store (memory:// stands in for s3:// here)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from app.config import Settings
from app.storage import Storage, StorageError, image_key
from tests.conftest import TEST_SECRET


@pytest.mark.parametrize("remote", [False, True])
def test_put_get_and_refused_keys(tmp_path, remote):
    url = f"memory://bucket-{uuid.uuid4().hex[:6]}/t2if" if remote else str(tmp_path / "store")
    store = Storage(url)
    assert store.local is (not remote)
    key = image_key("ab" * 32, "png")
    store.put(key, b"\x89PNG data")
    assert store.exists(key) and store.get(key) == b"\x89PNG data"
    for bad in ("../etc/passwd", "images/../../x", "/abs/path", "images//x", ".hidden"):
        with pytest.raises(StorageError):
            store.put(bad, b"x")
    with pytest.raises(StorageError):
        store.get("images/missing.png")
    if not remote:  # local writes are atomic: no temporary file is left behind
        assert [p.name for p in (tmp_path / "store" / "images" / "ab").iterdir()] == [f"{'ab' * 32}.png"]


def test_artifacts_publish_to_an_object_store_and_fetch_into_the_cache(tmp_path):
    from workers.artifacts import fetch, publish, work_dir
    from workers.runtime import Runtime

    settings = Settings(env="test", database_url=f"sqlite:///{tmp_path / 'x.db'}", secret_key=TEST_SECRET,
                        storage_url=f"memory://art-{uuid.uuid4().hex[:6]}", model_cache_dir=str(tmp_path / "cache"))
    rt = Runtime(settings)
    staging = work_dir(rt, "artifacts/reward/job-1")
    assert str(staging).startswith(str(tmp_path / "cache"))  # remote storage: staged locally first
    (staging / "config.json").write_text('{"kind": "reward"}')
    url = publish(rt, staging, "artifacts/reward/job-1")
    assert url.startswith("memory://") and url.endswith("artifacts/reward/job-1")
    local = Path(fetch(rt, url))
    assert (local / "config.json").read_text() == '{"kind": "reward"}'
    assert fetch(rt, url) == str(local)  # cached: fetched once
    assert fetch(rt, "openai/clip-vit-large-patch14") == "openai/clip-vit-large-patch14"  # hub ids pass through
    with pytest.raises(ValueError):
        fetch(rt, "memory://elsewhere/x")
