"""The browser's cookies: their names and how their values are signed. One definition for the
request dependencies, the log-in page and the annotation hot path."""

from __future__ import annotations

from itsdangerous import URLSafeTimedSerializer

from app.config import Settings

SESSION_COOKIE = "t2if_session"
LOGIN_CSRF_COOKIE = "t2if_login_csrf"


def cookie_signer(settings: Settings, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=salt)
