"""Users, log-ins (with throttling), browser sessions and API tokens. Services flush, never commit."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth import secrets as sec
from app.auth.identity import UserIdentity
from app.auth.liveness import session_live, token_live
from app.auth.schemas import TokenCreate, TokenCreated, TokenRead, UserCreate, UserRead, UserUpdate
from app.config import Settings
from app.db.base import utcnow
from app.db.enums import Role
from app.db.models import ApiToken, LoginLockout, User, UserSession
from app.errors import Conflict, Forbidden, NotFound, TooManyAttempts

# last_seen / last_used are refreshed at most this often, so reads do not turn into writes
TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True)
class Principal:
    """Who is calling, and how: via a browser session (needs CSRF) or a bearer token."""

    user: UserIdentity
    via: str  # "session" | "token"
    session_id: str | None = None
    csrf_token: str | None = None

    @property
    def role(self) -> Role:
        return Role(self.user.role)


# ---- users -------------------------------------------------------------------------------------


def create_user(session: Session, body: UserCreate) -> User:
    if session.scalar(select(User.id).where(User.username == body.username)) is not None:
        raise Conflict(f"A user named {body.username!r} already exists.", code="username_taken")
    user = User(
        username=body.username,
        display_name=body.display_name or body.username,
        role=body.role.value,
        password_hash=sec.hash_password(body.password),
        pseudonym=sec.new_pseudonym(),
        is_active=True,
        failed_login_count=0,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent create with the same name
        raise Conflict(f"A user named {body.username!r} already exists.", code="username_taken") from exc
    return user


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} does not exist.")
    return user


def get_user_by_username(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username.lower()))
    if user is None:
        raise NotFound(f"User {username!r} does not exist.")
    return user


def list_users(session: Session) -> list[UserRead]:
    locked = locked_addresses(session)
    return [read_user(u, locked) for u in session.scalars(select(User).order_by(User.id))]


def read_user(user: User, locked: dict[int, int]) -> UserRead:
    return UserRead.model_validate(user).model_copy(update={"locked_addresses": locked.get(user.id, 0)})


def update_user(session: Session, user_id: int, body: UserUpdate, *, actor: UserIdentity) -> User:
    user = get_user(session, user_id)
    if user.id == actor.id and (body.is_active is False or (body.role and body.role != Role(user.role))):
        raise Forbidden("You cannot deactivate yourself or change your own role.", code="self_change")
    if body.role is not None:
        user.role = body.role.value
    if body.display_name is not None:
        user.display_name = body.display_name
    if body.password is not None:
        user.password_hash = sec.hash_password(body.password)
        unlock_user(session, user)
        # a new password shuts out whoever held the old one: their sessions and API tokens alike
        revoke_all_tokens(session, user.id)
    if body.unlock:
        unlock_user(session, user)
    if body.is_active is not None:
        user.is_active = body.is_active
    if body.is_active is False or body.password is not None:
        end_all_sessions(session, user.id)
    session.flush()
    return user


def deactivate_user(session: Session, username: str) -> User:
    user = get_user_by_username(session, username)
    user.is_active = False
    end_all_sessions(session, user.id)
    session.flush()
    return user


# ---- log-in and browser sessions ---------------------------------------------------------------


def client_key(host: str | None) -> str:
    """The address a log-in counts against: the IP as given, an IPv6 address by its /64 (one host
    usually holds a whole /64), an IPv4-mapped IPv6 address as IPv4. Behind a proxy, the address is
    the one uvicorn takes from X-Forwarded-For of a trusted proxy (FORWARDED_ALLOW_IPS)."""
    try:
        ip = ipaddress.ip_address((host or "").strip())
    except ValueError:
        return (host or "unknown").strip()[:64] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


def _lock_seconds(settings: Settings, over: int) -> int:
    return min(settings.login_lock_seconds * (2**over), 24 * 3600)


def _too_many(until: datetime, now: datetime, *, everywhere: bool) -> TooManyAttempts:
    wait = math.ceil((until - now).total_seconds() / 60)
    where = "" if everywhere else " from your network address"
    return TooManyAttempts(
        f"Too many failed log-ins for this account{where}. Try again in {wait} minute{'s' if wait != 1 else ''}, "
        "or ask an administrator to unlock it."
    )


def authenticate(session: Session, settings: Settings, username: str, password: str, client: str = "") -> User | None:
    """Check a password; repeated failures lock the account for a time that doubles each time.

    Failures count per account *and client address* (`client_key`): `login_max_failures` wrong
    passwords from one address lock the account for that address only, so someone guessing cannot
    lock the owner (or the admin) out. All addresses together count against the much higher
    `login_account_max_failures`, which locks the account everywhere and so bounds guessing spread
    over many addresses. An administrator lifts both (`unlock_user`).

    The account's row is locked (SELECT ... FOR UPDATE) before any lock-out is checked and held until
    the caller commits, so parallel attempts on one account are checked one after another: the
    failure that reaches a limit locks however many arrive at once, and no attempt reaches the
    password check after that. Counters are incremented in SQL as well, so a database without row
    locks (SQLite, which serialises writers) still counts every failure.
    """
    now = utcnow()
    key = client_key(client)
    user = session.scalar(
        select(User).where(User.username == username.strip().lower()).with_for_update()
    )
    if user is not None:
        if user.locked_until is not None and user.locked_until > now:
            raise _too_many(user.locked_until, now, everywhere=True)
        here = session.get(LoginLockout, (user.id, key), populate_existing=True)
        if here is not None and here.locked_until is not None and here.locked_until > now:
            raise _too_many(here.locked_until, now, everywhere=False)
    ok = sec.verify_password(user.password_hash if user else None, password)
    if user is None or not user.is_active:
        return None
    if not ok:
        _count_failure(session, settings, user, key, now)
        return None
    session.execute(delete(LoginLockout).where(LoginLockout.user_id == user.id, LoginLockout.client == key))
    user.failed_login_count = 0
    user.locked_until = None
    user.last_login_at = now
    if sec.needs_rehash(user.password_hash):
        user.password_hash = sec.hash_password(password)
    session.flush()
    return user


def _count_failure(session: Session, settings: Settings, user: User, key: str, now: datetime) -> None:
    failures = session.scalar(
        update(LoginLockout)
        .where(LoginLockout.user_id == user.id, LoginLockout.client == key)
        .values(failures=LoginLockout.failures + 1, last_failure_at=now)
        .returning(LoginLockout.failures)
        .execution_options(synchronize_session=False)
    )
    if failures is None:  # the first failure from this address (the account row lock excludes a twin)
        session.add(LoginLockout(user_id=user.id, client=key, failures=1, last_failure_at=now))
        session.flush()
        failures = 1
    over = failures - settings.login_max_failures
    if over >= 0:
        session.execute(
            update(LoginLockout)
            .where(LoginLockout.user_id == user.id, LoginLockout.client == key)
            .values(locked_until=now + timedelta(seconds=_lock_seconds(settings, over)))
            .execution_options(synchronize_session=False)
        )
    total = session.scalar(
        update(User)
        .where(User.id == user.id)
        .values(failed_login_count=User.failed_login_count + 1)
        .returning(User.failed_login_count)
        .execution_options(synchronize_session=False)
    )
    user.failed_login_count = total or 0
    over = user.failed_login_count - settings.login_account_max_failures
    if over >= 0:
        user.locked_until = now + timedelta(seconds=_lock_seconds(settings, over))
    session.flush()


def unlock_user(session: Session, user: User) -> None:
    """Lift every log-in lock-out of the account (all addresses; failed attempts forgotten); the
    password stays as it is."""
    user.failed_login_count = 0
    user.locked_until = None
    session.execute(delete(LoginLockout).where(LoginLockout.user_id == user.id))


def locked_addresses(session: Session) -> dict[int, int]:
    """user id -> how many client addresses are locked out of that account now."""
    rows = session.execute(
        select(LoginLockout.user_id, func.count())
        .where(LoginLockout.locked_until > utcnow())
        .group_by(LoginLockout.user_id)
    )
    return {uid: int(n) for uid, n in rows}


def start_session(session: Session, settings: Settings, user: User, user_agent: str = "") -> tuple[str, UserSession]:
    """Create a browser session; returns the raw secret for the cookie (only its hash is stored)."""
    raw = sec.new_secret()
    row = UserSession(
        id=sec.sha256_hex(raw),
        user_id=user.id,
        csrf_token=sec.new_secret(),
        expires_at=utcnow() + timedelta(hours=settings.session_hours),
        last_seen_at=utcnow(),
        user_agent=user_agent[:255],
    )
    session.add(row)
    session.flush()
    return raw, row


def resolve_session(session: Session, raw_secret: str) -> Principal | None:
    now = utcnow()
    found = session.execute(
        select(UserSession, User).join(User, User.id == UserSession.user_id)
        .where(UserSession.id == sec.sha256_hex(raw_secret), session_live(UserSession, User, now))
    ).first()
    if found is None:
        return None
    row, user = found
    if row.last_seen_at is None or now - row.last_seen_at > TOUCH_INTERVAL:
        row.last_seen_at = now
    return Principal(user=user, via="session", session_id=row.id, csrf_token=row.csrf_token)


def end_session(session: Session, session_id: str) -> None:
    row = session.get(UserSession, session_id)
    if row is not None:
        session.delete(row)
        session.flush()


def end_all_sessions(session: Session, user_id: int) -> None:
    for row in session.scalars(select(UserSession).where(UserSession.user_id == user_id)):
        session.delete(row)


# ---- API tokens --------------------------------------------------------------------------------


def create_token(session: Session, user: UserIdentity, body: TokenCreate) -> TokenCreated:
    raw = sec.new_api_token()
    row = ApiToken(
        user_id=user.id,
        name=body.name,
        token_hash=sec.sha256_hex(raw),
        prefix=raw[: len(sec.TOKEN_PREFIX) + 6],
        expires_at=utcnow() + timedelta(days=body.expires_in_days) if body.expires_in_days else None,
    )
    session.add(row)
    session.flush()
    return TokenCreated(**TokenRead.model_validate(row).model_dump(), token=raw)


def list_tokens(session: Session, user: UserIdentity) -> list[TokenRead]:
    rows = session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id))
    return [TokenRead.model_validate(r) for r in rows]


def revoke_token(session: Session, token_id: int, *, actor: UserIdentity) -> TokenRead:
    row = session.get(ApiToken, token_id)
    # another user's token answers 404, not 403, so ids of other people's tokens are not confirmed
    if row is None or (row.user_id != actor.id and actor.role != Role.admin.value):
        raise NotFound(f"Token {token_id} does not exist.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return TokenRead.model_validate(row)


def revoke_tokens_of(session: Session, username: str) -> int:
    return revoke_all_tokens(session, get_user_by_username(session, username).id)


def revoke_all_tokens(session: Session, user_id: int) -> int:
    """Revoke every live API token of a user; returns how many."""
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def revoke_token_by_prefix_or_id(session: Session, ident: str) -> ApiToken:
    query = select(ApiToken)
    if ident.isdigit():
        query = query.where(ApiToken.id == int(ident))
    else:
        query = query.where(ApiToken.token_hash == sec.sha256_hex(ident))
    row = session.scalar(query)
    if row is None:
        raise NotFound("No such token.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def resolve_token(session: Session, raw: str) -> Principal | None:
    if not raw.startswith(sec.TOKEN_PREFIX):
        return None
    now = utcnow()
    found = session.execute(
        select(ApiToken, User).join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == sec.sha256_hex(raw), token_live(ApiToken, User, now))
    ).first()
    if found is None:
        return None
    row, user = found
    if row.last_used_at is None or now - row.last_used_at > TOUCH_INTERVAL:
        row.last_used_at = now
    return Principal(user=user, via="token")
