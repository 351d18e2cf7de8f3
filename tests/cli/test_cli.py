"""The t2i-feedback command, run as a real subprocess against the test database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_SECRET

EXE = shutil.which("t2i-feedback") or str(Path(sys.executable).parent / "t2i-feedback")


def run(args: list[str], env: dict[str, str], timeout: int = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli_env(pg_url, db, tmp_path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(T2IF_DATABASE_URL=pg_url, T2IF_SECRET_KEY=TEST_SECRET, T2IF_ENV="test",
               T2IF_STORAGE_URL=str(tmp_path / "storage"))
    return env


def test_users_and_tokens_round_trip(cli_env, client):
    r = run(["users", "create", "--username", "Carol", "--role", "researcher", "--password", "carol-pass-1"], cli_env)
    assert r.returncode == 0, r.stderr
    assert "created researcher carol" in r.stdout

    r = run(["tokens", "create", "--username", "carol", "--name", "ci"], cli_env)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("t2if_")
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["role"] == "researcher"

    listed = run(["users", "list"], cli_env)
    assert "carol\tresearcher\tactive" in listed.stdout

    r = run(["tokens", "revoke", token], cli_env)
    assert r.returncode == 0 and "revoked token" in r.stdout
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401

    r = run(["users", "deactivate", "--username", "carol"], cli_env)
    assert r.returncode == 0 and "deactivated carol" in r.stdout
    assert "carol\tresearcher\tdeactivated" in run(["users", "list"], cli_env).stdout
    r = run(["tokens", "create", "--username", "carol"], cli_env)
    assert r.returncode == 1 and "deactivated" in r.stderr


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["users", "create", "--username", "x", "--role", "boss", "--password", "long-enough"], 2, "'--role'"),
        (["users", "create", "--username", "x", "--password", "short"], 2, "at least 8 characters"),
        (["users", "create", "--role", "annotator", "--password", "long-enough"], 2, "--username"),
        (["tokens", "create", "--username", "nobody"], 1, "does not exist"),
        (["tokens", "revoke"], 2, "either a token"),
        (["no-such-command"], 2, "No such command"),
    ],
)
def test_bad_arguments_give_a_message_and_non_zero_exit(cli_env, args, code, needle):
    r = run(args, cli_env)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert needle in r.stderr


def test_duplicate_user_is_refused(cli_env):
    assert run(["users", "create", "--username", "dan", "--password", "long-enough"], cli_env).returncode == 0
    r = run(["users", "create", "--username", "DAN", "--password", "long-enough"], cli_env)
    assert r.returncode == 1 and "already exists" in r.stderr


def test_unreachable_database_is_reported_not_traced(cli_env):
    env = cli_env | {"T2IF_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none"}
    r = run(["users", "list"], env)
    assert r.returncode == 1 and "database error" in r.stderr and "Traceback" not in r.stderr


def test_production_mode_refuses_default_secret(cli_env):
    env = {k: v for k, v in cli_env.items() if k != "T2IF_SECRET_KEY"} | {"T2IF_ENV": "production"}
    r = run(["serve", "--port", "8999"], env, timeout=30)
    assert r.returncode == 1 and "T2IF_SECRET_KEY" in r.stderr


def test_migrate_command_reports_revision(cli_env):
    r = run(["migrate"], cli_env)
    assert r.returncode == 0 and "database at revision" in r.stdout


def test_ml_stages_are_mounted_and_load_lazily(cli_env):
    r = run(["ml", "--help"], cli_env)
    assert r.returncode == 0 and "train-reward" in r.stdout and "make-tiny-models" in r.stdout
    # the other commands (and the Celery parent process) must not pay for importing torch
    code = "import sys, workers.cli, workers.tasks; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], env=cli_env, timeout=60).returncode == 0
