"""Dashboard fixtures: logged-in admin and researcher browser sessions on the TestClient."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conftest import Account, browser_login


@dataclass
class Session_:
    account: Account
    csrf: str


@pytest.fixture
def admin(client, make_user) -> Session_:
    acc = make_user("admin", username="boss")
    return Session_(acc, browser_login(client, acc.username, acc.password))


@pytest.fixture
def researcher_client(app, make_user):
    from fastapi.testclient import TestClient

    acc = make_user("researcher", username="rita")
    with TestClient(app) as c:
        browser_login(c, acc.username, acc.password)
        yield c
