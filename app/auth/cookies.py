"""The browser's cookies: their names and how their values are signed. One definition for the
request dependencies, the log-in page and the annotation hot path."""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.config import Settings

SESSION_COOKIE = "t2if_session"
LOGIN_CSRF_COOKIE = "t2if_login_csrf"


def cookie_signer(settings: Settings, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=salt)


def session_secret(settings: Settings, cookie: str | None) -> str | None:
    """The session secret a session cookie carries; None without a cookie, or with one that is
    not ours or older than a session lives (what the database says of the session is separate:
    auth.liveness)."""
    if not cookie:
        return None
    try:
        return str(cookie_signer(settings, "session").loads(cookie, max_age=settings.session_hours * 3600))
    except BadSignature:
        return None
