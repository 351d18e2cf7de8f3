"""Admin user actions: deactivate, change role, create; self-change and missing CSRF are refused."""

from __future__ import annotations

from sqlalchemy import select

from app.db.models import User


def _user(db, user_id: int) -> User:
    db.expire_all()
    return db.get(User, user_id)


def test_deactivate_and_reactivate(client, admin, db, make_user):
    ann = make_user("annotator", username="ann")
    r = client.post(
        f"/admin/users/{ann.id}/active",
        data={"active": "false", "csrf_token": admin.csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/annotators?notice=deactivated")
    assert _user(db, ann.id).is_active is False
    page = client.get(r.headers["location"]).text
    assert "User deactivated" in page and 'aria-label="Activate ann"' in page
    # the deactivated user's token no longer works
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {ann.token}"}).status_code == 401
    client.post(f"/admin/users/{ann.id}/active", data={"active": "true", "csrf_token": admin.csrf})
    assert _user(db, ann.id).is_active is True


def test_change_role(client, admin, db, make_user):
    ann = make_user("annotator", username="ann")
    r = client.post(
        f"/admin/users/{ann.id}/role",
        data={"role": "researcher", "csrf_token": admin.csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert _user(db, ann.id).role == "researcher"


def test_changing_yourself_is_refused(client, admin, db):
    me = admin.account.id
    r = client.post(f"/admin/users/{me}/role", data={"role": "annotator", "csrf_token": admin.csrf})
    assert r.status_code == 403 and "cannot deactivate yourself or change your own role" in r.text
    assert 'role="alert"' in r.text and "Annotators" in r.text  # shown on the page itself
    r = client.post(f"/admin/users/{me}/active", data={"active": "false", "csrf_token": admin.csrf})
    assert r.status_code == 403
    u = _user(db, me)
    assert (u.role, u.is_active) == ("admin", True)
    # and the page offers no controls on your own row
    page = client.get("/admin/annotators").text
    assert f'action="/admin/users/{me}/' not in page


def test_action_without_csrf_token_is_refused(client, admin, db, make_user):
    ann = make_user("annotator", username="ann")
    r = client.post(f"/admin/users/{ann.id}/active", data={"active": "false"})
    assert r.status_code == 403 and "security token" in r.text
    r = client.post(f"/admin/users/{ann.id}/role", data={"role": "admin", "csrf_token": "forged"})
    assert r.status_code == 403
    u = _user(db, ann.id)
    assert (u.role, u.is_active) == ("annotator", True)


def test_create_user(client, admin, db):
    form = {"username": "NewBie", "password": "long-enough-1", "role": "researcher", "csrf_token": admin.csrf}
    r = client.post("/admin/users", data=form, follow_redirects=False)
    assert r.status_code == 303
    u = db.scalar(select(User).where(User.username == "newbie"))
    assert u is not None and u.role == "researcher"
    again = client.post("/admin/users", data=form)
    assert again.status_code == 409
    # refused: the page again, the reason beside the form, what was typed kept but not the password
    assert 'role="alert"' in again.text and "already" in again.text and 'value="NewBie"' in again.text
    assert "long-enough-1" not in again.text and '<option value="researcher" selected>' in again.text
    r = client.post("/admin/users", data=form | {"username": "<b>x</b>", "password": "x"})
    assert r.status_code == 422 and "password" in r.text and 'role="alert"' in r.text
    assert 'value="&lt;b&gt;x&lt;/b&gt;"' in r.text and "<b>x</b>" not in r.text
    assert db.scalar(select(User).where(User.username == "<b>x</b>")) is None


def test_researcher_cannot_act(researcher_client, db, make_user):
    from tests.conftest import CSRF_META

    ann = make_user("annotator", username="ann")
    csrf = CSRF_META.search(researcher_client.get("/admin").text).group(1)
    r = researcher_client.post(f"/admin/users/{ann.id}/active", data={"active": "false", "csrf_token": csrf})
    assert r.status_code == 403
    assert _user(db, ann.id).is_active is True


def test_refused_username_is_explained_in_words_not_a_pattern(client, admin, db):
    """Users never see a regular expression: the form and the API say what is allowed."""
    form = {"username": "-bad name!", "password": "long-enough-1", "role": "annotator", "csrf_token": admin.csrf}
    r = client.post("/admin/users", data=form)
    assert r.status_code == 422 and 'role="alert"' in r.text
    assert "letters, digits and _ . @ -, starting with a letter or digit" in r.text
    assert "pattern" not in r.text and "^[" not in r.text and "{0,63}" not in r.text

    api = client.post("/api/v1/users", json={"username": "a b", "password": "long-enough-1"},
                      headers={"X-CSRF-Token": admin.csrf})
    message = api.json()["error"]["message"]
    assert api.status_code == 422 and message.startswith("username: use 1 to 64 characters"), message
    assert "pattern" not in message and "^[" not in message
    # the API's description still carries the exact rule for scripts
    schema = client.get("/openapi.json").json()["components"]["schemas"]["UserCreate"]
    assert schema["properties"]["username"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
