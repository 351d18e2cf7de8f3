"""Log-in, sessions, CSRF, throttling, tokens and their revocation."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.db.models import ApiToken, LoginLockout, User, UserSession
from tests.conftest import CSRF_INPUT, bearer, browser_login


def test_login_sets_a_hardened_session_cookie_and_lands_by_role(client, make_user):
    for role, marker in [("annotator", "Rate images"), ("researcher", "REST API"), ("admin", "Annotators")]:
        acct = make_user(role)
        client.cookies.clear()
        page = client.get("/login")
        csrf = CSRF_INPUT.search(page.text).group(1)
        r = client.post(
            "/login",
            data={"username": acct.username.upper(), "password": acct.password, "csrf_token": csrf, "next": "/"},
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert "t2if_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
        home = client.get("/")
        assert home.status_code == 200 and marker in home.text


def test_wrong_password_is_refused_and_stores_nothing_secret(client, make_user, db):
    acct = make_user("annotator")
    page = client.get("/login")
    csrf = CSRF_INPUT.search(page.text).group(1)
    r = client.post("/login", data={"username": acct.username, "password": "nope-nope", "csrf_token": csrf})
    assert r.status_code == 401 and "Wrong username or password" in r.text
    assert db.scalar(select(UserSession.id)) is None
    user = db.scalar(select(User).where(User.username == acct.username))
    assert user.password_hash.startswith("$argon2") and acct.password not in user.password_hash


def _login(client, username, password):
    csrf = CSRF_INPUT.search(client.get("/login").text).group(1)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": csrf},
                       follow_redirects=False)


def test_repeated_failures_lock_the_account_for_that_address_only(app, make_user, db):
    """A stranger's guesses lock the account for the stranger's address; its owner, elsewhere, logs in."""
    from fastapi.testclient import TestClient

    acct = make_user("admin")
    with TestClient(app, client=("203.0.113.7", 5000)) as stranger, \
            TestClient(app, client=("198.51.100.20", 6000)) as owner:
        for _ in range(3):  # settings fixture: login_max_failures=3
            assert _login(stranger, acct.username, "bad-guess!").status_code == 401
        r = _login(stranger, acct.username, acct.password)
        assert r.status_code == 429 and "Too many failed log-ins" in r.text and "your network address" in r.text
        lock = db.scalar(select(LoginLockout).where(LoginLockout.user_id == acct.id))
        assert lock.client == "203.0.113.7" and lock.failures == 3 and lock.locked_until is not None
        assert db.scalar(select(User.locked_until).where(User.id == acct.id)) is None
        assert _login(owner, acct.username, acct.password).status_code == 303
        # the owner's success forgets the owner's address only: the stranger stays locked out
        assert _login(stranger, acct.username, acct.password).status_code == 429


def test_an_ipv6_host_counts_as_its_whole_64(app, make_user, db):
    from fastapi.testclient import TestClient

    from app.auth.service import client_key

    assert client_key("2001:db8:1:2::5") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1" and client_key(None) == "unknown"
    acct = make_user("annotator")
    for i in range(3):
        with TestClient(app, client=(f"2001:db8:1:2::{i + 1}", 5000)) as c:
            _login(c, acct.username, "bad-guess!")
    with TestClient(app, client=("2001:db8:1:2::99", 5000)) as c:
        assert _login(c, acct.username, acct.password).status_code == 429
    with TestClient(app, client=("2001:db8:1:3::1", 5000)) as c:
        assert _login(c, acct.username, acct.password).status_code == 303


def test_guesses_from_many_addresses_lock_the_account_everywhere(app, settings, session_factory, make_user):
    """login_account_max_failures bounds guessing spread over many addresses."""
    from app.auth import service as auth
    from app.errors import TooManyAttempts

    acct = make_user("annotator")
    limit = settings.login_account_max_failures
    with session_factory() as s:
        for i in range(limit):
            assert auth.authenticate(s, settings, acct.username, "bad-guess!", f"192.0.2.{i + 1}") is None
            s.commit()
        with pytest.raises(TooManyAttempts) as exc:
            auth.authenticate(s, settings, acct.username, acct.password, "198.51.100.1")
        assert "your network address" not in exc.value.message
        user = s.get(User, acct.id)
        assert user.failed_login_count == limit and user.locked_until is not None


def test_login_form_without_csrf_token_is_refused(client, make_user):
    acct = make_user("annotator")
    client.get("/login")
    r = client.post("/login", data={"username": acct.username, "password": acct.password})
    assert r.status_code == 403
    assert "security token" in r.text


def test_state_changing_form_without_csrf_token_is_refused(client, make_user, db):
    acct = make_user("annotator")
    csrf = browser_login(client, acct.username, acct.password)
    # token form without the token: refused, nothing created
    r = client.post("/account/tokens", data={"name": "sneaky"})
    assert r.status_code == 403
    assert db.scalar(select(ApiToken).where(ApiToken.name == "sneaky")) is None
    # a wrong token is refused too
    r = client.post("/account/tokens", data={"name": "sneaky", "csrf_token": csrf[::-1]})
    assert r.status_code == 403
    # JSON API with the session cookie but no X-CSRF-Token header: refused
    r = client.post("/api/v1/tokens", json={"name": "sneaky"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    # logout without the token is refused and the session stays
    r = client.post("/logout", follow_redirects=False)
    assert r.status_code == 403
    assert client.get("/api/v1/me").status_code == 200
    # with the token everything works
    r = client.post("/account/tokens", data={"name": "mine", "csrf_token": csrf})
    assert r.status_code == 201 and "t2if_" in r.text
    r = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/api/v1/me").status_code == 401


def test_token_is_shown_once_stored_hashed_and_revocable(client, make_user, db):
    acct = make_user("researcher")
    created = client.post("/api/v1/tokens", json={"name": "script"}, headers=bearer(acct)).json()
    raw = created["token"]
    row = db.get(ApiToken, created["id"])
    assert raw not in (row.token_hash, row.prefix) and len(row.token_hash) == 64
    listing = client.get("/api/v1/tokens", headers=bearer(acct)).json()
    assert all("token" not in t for t in listing)

    h = {"Authorization": f"Bearer {raw}"}
    assert client.get("/api/v1/me", headers=h).json()["username"] == acct.username
    r = client.delete(f"/api/v1/tokens/{created['id']}", headers=h)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    r = client.get("/api/v1/me", headers=h)
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    # the user's other token still works
    assert client.get("/api/v1/me", headers=bearer(acct)).status_code == 200


def test_cannot_revoke_someone_elses_token(client, make_user, db):
    a, b = make_user("researcher"), make_user("researcher")
    b_token_id = db.scalar(select(ApiToken.id).where(ApiToken.user_id == b.id))
    assert client.delete(f"/api/v1/tokens/{b_token_id}", headers=bearer(a)).status_code == 404
    assert client.get("/api/v1/me", headers=bearer(b)).status_code == 200


def test_deactivated_user_loses_token_and_session_access(client, make_user):
    admin, victim = make_user("admin"), make_user("annotator")
    browser_login(client, victim.username, victim.password)
    assert client.get("/api/v1/me").status_code == 200
    r = client.patch(f"/api/v1/users/{victim.id}", json={"is_active": False}, headers=bearer(admin))
    assert r.status_code == 200 and r.json()["is_active"] is False
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers=bearer(victim)).status_code == 401


def test_malformed_authorization_header(client):
    r = client.get("/api/v1/me", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401 and "Bearer" in r.json()["error"]["message"]
    r = client.get("/api/v1/me", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401


def test_open_redirect_is_refused(client, make_user):
    acct = make_user("annotator")
    csrf = CSRF_INPUT.search(client.get("/login").text).group(1)
    r = client.post(
        "/login",
        data={"username": acct.username, "password": acct.password, "csrf_token": csrf, "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_admin_manages_users_over_rest(client, make_user):
    admin = make_user("admin")
    r = client.post(
        "/api/v1/users",
        json={"username": "NewPerson", "password": "long-enough-1", "role": "researcher"},
        headers=bearer(admin),
    )
    assert r.status_code == 201 and r.json()["username"] == "newperson"
    dup = client.post(
        "/api/v1/users", json={"username": "newperson", "password": "long-enough-1"}, headers=bearer(admin)
    )
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "username_taken"
    bad = client.post("/api/v1/users", json={"username": "x y", "password": "short"}, headers=bearer(admin))
    assert bad.status_code == 422 and "username" in bad.json()["error"]["message"]
    own = client.patch(f"/api/v1/users/{admin.id}", json={"role": "annotator"}, headers=bearer(admin))
    assert own.status_code == 403


def test_parallel_wrong_passwords_are_checked_one_by_one_and_lock_the_account(settings, session_factory, make_user):
    """20 wrong passwords at once: only login_max_failures of them reach the password check."""
    import threading

    from app.auth import secrets as sec
    from app.auth import service as auth
    from app.errors import TooManyAttempts

    acct = make_user("admin")
    checks, outcomes, lock = [], [], threading.Lock()
    verify = sec.verify_password
    start = threading.Barrier(20)

    def counted(hashed, password):
        with lock:
            checks.append(password)
        return verify(hashed, password)

    def attempt():
        start.wait()
        with session_factory() as s:
            try:
                outcome = "ok" if auth.authenticate(s, settings, acct.username, "wrong-guess!") else "wrong"
            except TooManyAttempts:
                outcome = "locked"
            s.commit()
        with lock:
            outcomes.append(outcome)

    sec.verify_password = counted
    try:
        threads = [threading.Thread(target=attempt) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sec.verify_password = verify
    assert len(checks) == settings.login_max_failures  # 3, not 20
    assert sorted(outcomes) == ["locked"] * 17 + ["wrong"] * 3
    with session_factory() as s:
        lock = s.get(LoginLockout, (acct.id, "unknown"))
        assert lock.failures == 3 and lock.locked_until is not None
        assert s.get(User, acct.id).failed_login_count == 3
        with pytest.raises(TooManyAttempts, match="ask an administrator"):
            auth.authenticate(s, settings, acct.username, acct.password)  # the right password waits too


def test_admin_unlocks_a_locked_account_and_the_owner_logs_in(client, make_user, db):
    acct, admin = make_user("annotator"), make_user("admin")
    for _ in range(3):
        csrf = CSRF_INPUT.search(client.get("/login").text).group(1)
        client.post("/login", data={"username": acct.username, "password": "bad-guess!", "csrf_token": csrf})
    r = client.get("/api/v1/users", headers=bearer(admin))
    assert next(u for u in r.json() if u["id"] == acct.id)["locked_addresses"] == 1
    page = client.get("/admin/annotators", headers=bearer(admin)).text
    assert f'action="/admin/users/{acct.id}/unlock"' in page and "log-in locked from 1 address" in page
    r = client.patch(f"/api/v1/users/{acct.id}", json={"unlock": True}, headers=bearer(admin))
    assert r.status_code == 200 and r.json()["locked_until"] is None and r.json()["locked_addresses"] == 0
    csrf = CSRF_INPUT.search(client.get("/login").text).group(1)
    r = client.post("/login", data={"username": acct.username, "password": acct.password, "csrf_token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303


def test_a_new_password_revokes_the_users_api_tokens(client, make_user):
    acct, admin = make_user("researcher"), make_user("admin")
    assert client.get("/api/v1/me", headers=bearer(acct)).status_code == 200
    r = client.patch(f"/api/v1/users/{acct.id}", json={"password": "a-brand-new-one-7"}, headers=bearer(admin))
    assert r.status_code == 200
    assert client.get("/api/v1/me", headers=bearer(acct)).status_code == 401
    tokens = client.get("/api/v1/tokens", headers=bearer(admin)).json()  # the admin's own are untouched
    assert tokens and all(t["revoked_at"] is None for t in tokens)
