"""App-level commands: migrate, serve, users, tokens. Mounted by workers.cli, the entry point."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from app.auth import service as auth
from app.auth.schemas import TokenCreate, UserCreate
from app.config import Settings, get_settings
from app.db import migrate as migrations
from app.db.enums import Role
from app.db.session import make_engine, make_sessionmaker, transaction
from app.errors import AppError


def load_settings() -> Settings:
    try:
        return get_settings()
    except Exception as exc:  # pydantic's message names the variable that is wrong
        raise click.ClickException(f"configuration error: {exc}") from exc


@contextmanager
def unit_of_work(settings: Settings) -> Iterator[Session]:
    engine = make_engine(settings.database_url, pool_size=2)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            yield session
    except AppError as exc:
        raise click.ClickException(exc.message) from exc
    except (OperationalError, ProgrammingError) as exc:
        raise click.ClickException(
            f"database error ({type(exc.orig).__name__}): is {settings.database_url.split('@')[-1]} reachable "
            "and migrated? Run `t2i-feedback migrate`."
        ) from exc
    finally:
        engine.dispose()


@click.command()
@click.option("--revision", default="head", show_default=True, help="target revision")
@click.option("--downgrade", is_flag=True, help="go down to --revision instead of up")
def migrate(revision: str, downgrade: bool) -> None:
    """Apply database migrations (the only way the schema changes)."""
    settings = load_settings()
    try:
        if downgrade:
            migrations.downgrade(settings.database_url, revision)
        else:
            migrations.upgrade(settings.database_url, revision)
    except OperationalError as exc:
        raise click.ClickException(f"cannot reach the database: {exc.orig}") from exc
    click.echo(f"database at revision {migrations.current_revision(settings.database_url)}")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="uvicorn processes")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(host: str, port: int, workers: int, log_level: str) -> None:
    """Run the web service (configured by T2IF_* environment variables)."""
    import uvicorn

    load_settings()
    # the app logs one line per request itself (client, method, path, status, time, request id; T2IF_LOG_LEVEL);
    # uvicorn's own access line would say the same again without the request id
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, proxy_headers=True, access_log=False)


@click.group()
def users() -> None:
    """Create, list, deactivate and unlock users."""


@users.command("create")
@click.option("--username", required=True)
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.annotator.value, show_default=True)
@click.option("--password", help="at least 8 characters; asked for when omitted")
@click.option("--display-name", default="")
def users_create(username: str, role: str, password: str | None, display_name: str) -> None:
    if password is None:
        if not sys.stdin.isatty():
            raise click.UsageError("--password is required when not run in a terminal")
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        body = UserCreate(username=username, password=password, role=Role(role), display_name=display_name)
    except ValueError as exc:
        raise click.BadParameter(_pydantic_message(exc)) from exc
    with unit_of_work(load_settings()) as session:
        user = auth.create_user(session, body)
        click.echo(f"created {user.role} {user.username} (id {user.id})")


@users.command("list")
def users_list() -> None:
    with unit_of_work(load_settings()) as session:
        for u in auth.list_users(session):
            state = "active" if u.is_active else "deactivated"
            click.echo(f"{u.id}\t{u.username}\t{u.role.value}\t{state}\t{u.pseudonym}")


@users.command("deactivate")
@click.option("--username", required=True)
def users_deactivate(username: str) -> None:
    """Block log-in and API access; sessions end at once, labels stay."""
    with unit_of_work(load_settings()) as session:
        user = auth.deactivate_user(session, username)
        revoked = auth.revoke_tokens_of(session, username)
        click.echo(f"deactivated {user.username}; revoked {revoked} token(s)")


@users.command("unlock")
@click.option("--username", required=True)
def users_unlock(username: str) -> None:
    """Lift a lock-out after repeated failed log-ins (the password stays)."""
    with unit_of_work(load_settings()) as session:
        user = auth.get_user_by_username(session, username)
        auth.unlock_user(session, user)
        click.echo(f"unlocked {user.username}")


@click.group()
def tokens() -> None:
    """Create and revoke API bearer tokens."""


@tokens.command("create")
@click.option("--username", required=True)
@click.option("--name", default="cli", show_default=True)
@click.option("--expires-in-days", type=click.IntRange(1, 3650), default=None)
def tokens_create(username: str, name: str, expires_in_days: int | None) -> None:
    """Print a new bearer token on the last line (it is stored hashed and not shown again)."""
    with unit_of_work(load_settings()) as session:
        user = auth.get_user_by_username(session, username)
        if not user.is_active:
            raise click.ClickException(f"user {username!r} is deactivated")
        created = auth.create_token(session, user, TokenCreate(name=name, expires_in_days=expires_in_days))
    click.echo(f"token {created.id} for {username} (shown once):")
    click.echo(created.token)


@tokens.command("revoke")
@click.argument("token_or_id", required=False)
@click.option("--username", help="revoke every token of this user")
def tokens_revoke(token_or_id: str | None, username: str | None) -> None:
    """Revoke one token (by its id or the token itself) or all of a user's tokens."""
    if bool(token_or_id) == bool(username):
        raise click.UsageError("give either a token (or its id) or --username")
    with unit_of_work(load_settings()) as session:
        if username:
            click.echo(f"revoked {auth.revoke_tokens_of(session, username)} token(s) of {username}")
        else:
            row = auth.revoke_token_by_prefix_or_id(session, str(token_or_id))
            click.echo(f"revoked token {row.id}")


def _pydantic_message(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors())
    return str(exc)


COMMANDS = [migrate, serve, users, tokens]
