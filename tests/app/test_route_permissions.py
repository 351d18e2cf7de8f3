"""Walk the whole route table: outside an explicit public list, every route answers 401 to an
anonymous caller and 403 to a caller whose role is too low. A new route without a role guard
fails this test until it is guarded or listed as public."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount

from app.db.enums import ROLE_RANK, Role
from app.deps import RoleGuard
from tests.conftest import bearer

# (method, path) pairs that anyone may call
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/"),  # redirects an anonymous visitor to /login
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
}
PUBLIC_MOUNTS = {"/static", "/static/swagger"}


def _guard(dependant) -> RoleGuard | None:
    for dep in dependant.dependencies:
        if isinstance(dep.call, RoleGuard):
            return dep.call
        found = _guard(dep)
        if found:
            return found
    return None


def _routes(app):
    # FastAPI includes routers lazily; iter_route_contexts yields the effective (prefixed) routes
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, Mount):
            assert route.path in PUBLIC_MOUNTS, f"unexpected mount {route.path}"
            continue
        if not isinstance(route.original_route, APIRoute):
            # the only non-API routes are the OpenAPI schema and docs, listed as public
            for method in getattr(route, "methods", None) or {"GET"}:
                if method != "HEAD":
                    assert (method, route.path) in PUBLIC, f"unguarded route {method} {route.path}"
            continue
        for method in route.methods:
            yield method, route.path, _guard(route.dependant)


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_is_guarded_or_public(app):
    routes = list(_routes(app))
    assert len(routes) >= 10
    for method, path, guard in routes:
        if (method, path) in PUBLIC:
            continue
        assert guard is not None, f"{method} {path} has no role guard and is not listed as public"


def test_anonymous_gets_401_and_low_roles_get_403(app, client, make_user):
    accounts = {role: make_user(role.value) for role in Role}
    checked = 0
    for method, path, guard in _routes(app):
        if (method, path) in PUBLIC:
            continue
        url = _concrete(path)
        anon = client.request(method, url)
        assert anon.status_code == 401, f"anonymous {method} {path} -> {anon.status_code}"
        for role in Role:
            if ROLE_RANK[role] < ROLE_RANK[guard.min_role]:
                r = client.request(method, url, headers=bearer(accounts[role]))
                assert r.status_code == 403, f"{role.value} {method} {path} -> {r.status_code}"
                assert r.json()["error"]["code"] == "forbidden"
        checked += 1
    assert checked >= 8


def test_low_roles_get_403_with_a_session_cookie_too(app, make_user):
    """The same matrix for browsers: logged in by cookie, with the page's CSRF token, a role below a
    route's guard gets 403 (pages: the error page), on every route, and nothing is done."""
    from fastapi.testclient import TestClient

    from tests.conftest import browser_login

    checked = 0
    for role in (Role.annotator, Role.researcher):
        account = make_user(role.value)
        with TestClient(app) as browser:
            csrf = browser_login(browser, account.username, account.password)
            for method, path, guard in _routes(app):
                if (method, path) in PUBLIC or ROLE_RANK[role] >= ROLE_RANK[guard.min_role]:
                    continue
                r = browser.request(method, _concrete(path), headers={"X-CSRF-Token": csrf})
                assert r.status_code == 403, f"{role.value} by cookie {method} {path} -> {r.status_code}"
                checked += 1
    assert checked >= 20


@pytest.mark.parametrize("path", ["/account", "/api/v1/me"])
def test_anonymous_api_gets_json_and_browser_gets_login_form(client, path):
    r = client.get(path, headers={"accept": "text/html"})
    assert r.status_code == 401
    if path.startswith("/api"):
        assert r.json() == {"error": {"code": "not_authenticated", "message": r.json()["error"]["message"]}}
    else:
        assert 'action="/login"' in r.text and 'name="csrf_token"' in r.text


def test_login_form_keeps_the_query_string_of_the_page_asked_for(client):
    r = client.get("/annotate?prompt_set_id=3", headers={"accept": "text/html"})
    assert r.status_code == 401 and 'value="/annotate?prompt_set_id=3"' in r.text
