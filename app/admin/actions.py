"""Admin actions (POST forms with the CSRF field): create users, change roles, (de)activate.

The rules (no self-change, unique names, sessions ended on deactivation) live in the auth
service; these routes only parse the form, call it and redirect back to the page.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from app.auth import service as auth
from app.auth.schemas import UserCreate, UserUpdate
from app.db.enums import Role
from app.deps import AdminDep, SessionDep
from app.errors import Invalid

router = APIRouter()

NOTICES = {
    "created": "User created.",
    "deactivated": "User deactivated; their sessions have been ended.",
    "activated": "User activated.",
    "role": "Role changed.",
}


def back(notice: str) -> RedirectResponse:
    return RedirectResponse(f"/admin/annotators?{urlencode({'notice': notice})}", status_code=303)


@router.post("/users")
def create_user(
    principal: AdminDep,
    session: SessionDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    role: Annotated[Role, Form()] = Role.annotator,
    display_name: Annotated[str, Form(max_length=128)] = "",
) -> RedirectResponse:
    try:
        body = UserCreate(username=username, password=password, role=role, display_name=display_name)
    except ValidationError as exc:  # a form, not a JSON body: FastAPI did not validate it for us
        raise Invalid("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from exc
    auth.create_user(session, body)
    return back("created")


@router.post("/users/{user_id}/active")
def set_active(
    user_id: int, principal: AdminDep, session: SessionDep, active: Annotated[bool, Form()]
) -> RedirectResponse:
    auth.update_user(session, user_id, UserUpdate(is_active=active), actor=principal.user)
    return back("activated" if active else "deactivated")


@router.post("/users/{user_id}/role")
def set_role(
    user_id: int, principal: AdminDep, session: SessionDep, role: Annotated[Role, Form()]
) -> RedirectResponse:
    auth.update_user(session, user_id, UserUpdate(role=role), actor=principal.user)
    return back("role")
