"""Admin actions (POST forms with the CSRF field): create users, change roles, (de)activate, unlock.

The rules (no self-change, unique names, sessions ended on deactivation) live in the auth
service; these routes only parse the form, call it and redirect back to the page. A refusal
shows the page again with the reason beside the form (and what was typed), under its status.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.admin.pages import annotators_view
from app.auth import service as auth
from app.auth.schemas import UserCreate, UserUpdate
from app.db.enums import Role
from app.deps import AdminDep, Principal, SessionDep
from app.errors import AppError, Invalid

router = APIRouter(prefix="/admin", include_in_schema=False)

def back(notice: str) -> RedirectResponse:
    return RedirectResponse(f"/admin/annotators?{urlencode({'notice': notice})}", status_code=303)


def refused(request: Request, principal: Principal, session: Session, exc: AppError,
            form: dict[str, str] | None = None) -> Response:
    session.rollback()  # nothing of the refused action is kept
    return annotators_view(request, principal, session, error=exc.message, form=form, status_code=exc.status_code)


@router.post("/users")
def create_user(
    request: Request,
    principal: AdminDep,
    session: SessionDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    role: Annotated[Role, Form()] = Role.annotator,
    display_name: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    typed = {"username": username, "display_name": display_name, "role": role.value}
    try:
        try:
            body = UserCreate(username=username, password=password, role=role, display_name=display_name)
        except ValidationError as exc:  # a form, not a JSON body: FastAPI did not validate it for us
            raise Invalid("; ".join(f"{e['loc'][0]}: {str(e['msg']).removeprefix('Value error, ')}"
                                    for e in exc.errors())) from exc
        auth.create_user(session, body)
    except AppError as exc:
        return refused(request, principal, session, exc, typed)
    return back("created")


@router.post("/users/{user_id}/active")
def set_active(
    request: Request, user_id: int, principal: AdminDep, session: SessionDep, active: Annotated[bool, Form()]
) -> Response:
    try:
        auth.update_user(session, user_id, UserUpdate(is_active=active), actor=principal.user)
    except AppError as exc:
        return refused(request, principal, session, exc)
    return back("activated" if active else "deactivated")


@router.post("/users/{user_id}/role")
def set_role(
    request: Request, user_id: int, principal: AdminDep, session: SessionDep, role: Annotated[Role, Form()]
) -> Response:
    try:
        auth.update_user(session, user_id, UserUpdate(role=role), actor=principal.user)
    except AppError as exc:
        return refused(request, principal, session, exc)
    return back("role")


@router.post("/users/{user_id}/unlock")
def unlock(request: Request, user_id: int, principal: AdminDep, session: SessionDep) -> Response:
    try:
        auth.update_user(session, user_id, UserUpdate(unlock=True), actor=principal.user)
    except AppError as exc:
        return refused(request, principal, session, exc)
    return back("unlocked")
