"""Production settings: API description behind a log-in, secrets with entropy, a private beat file."""

from __future__ import annotations

import secrets

import pytest
from pydantic import ValidationError

from app.config import DEV_SECRET_KEY, Settings, secret_bits
from tests.conftest import bearer


@pytest.fixture
def private_docs_app(settings, session_factory, dispatcher, db):
    from app.main import create_app

    return create_app(settings.model_copy(update={"api_docs_public": False}), session_factory=session_factory,
                      dispatcher=dispatcher)


def test_api_description_is_for_researchers_when_not_public(private_docs_app, make_user):
    from fastapi.testclient import TestClient

    annotator, researcher = make_user("annotator"), make_user("researcher")
    with TestClient(private_docs_app) as c:
        for path in ("/openapi.json", "/docs"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers=bearer(annotator)).status_code == 403, path
            assert c.get(path, headers=bearer(researcher)).status_code == 200, path
        assert c.get("/openapi.json", headers=bearer(researcher)).json()["openapi"].startswith("3.")


def test_docs_are_public_by_default_outside_production_only():
    assert Settings(env="development").docs_public
    assert not Settings(env="production", secret_key=secrets.token_urlsafe(32)).docs_public
    assert Settings(env="production", secret_key=secrets.token_urlsafe(32), api_docs_public=True).docs_public


@pytest.mark.parametrize("weak", ["a" * 36, "ab" * 32, "abcd" * 10, DEV_SECRET_KEY, "short-but-random-Zx9"])
def test_production_refuses_weak_secrets(weak):
    with pytest.raises(ValidationError, match="too short or too repetitive"):
        Settings(env="production", secret_key=weak)


def test_production_accepts_generated_secrets():
    for key in (secrets.token_urlsafe(32), secrets.token_hex(32)):
        assert secret_bits(key) >= 128
        Settings(env="production", secret_key=key)


def test_beat_schedule_lives_with_the_installation(tmp_path):
    s = Settings(model_cache_dir=str(tmp_path / "models"))
    assert s.beat_schedule_path == tmp_path / "models" / "celerybeat-schedule"
    assert Settings(beat_schedule=str(tmp_path / "b")).beat_schedule_path == tmp_path / "b"
