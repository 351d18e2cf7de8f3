"""The landing page for each role and the account page (API tokens shown once)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth import service as auth
from app.auth.schemas import TokenCreate
from app.deps import AnnotatorDep, OptionalPrincipal, SessionDep
from app.fields import NoNul
from app.web import render

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, principal: OptionalPrincipal) -> Response:
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    return render(request, f"home/{principal.role.value}.html")


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, principal: AnnotatorDep, session: SessionDep) -> Response:
    tokens = auth.list_tokens(session, principal.user)
    return render(request, "account.html", {"tokens": tokens, "new_token": None})


@router.post("/account/tokens", response_class=HTMLResponse)
def account_create_token(
    request: Request,
    principal: AnnotatorDep,
    session: SessionDep,
    name: Annotated[str, Form(max_length=100), NoNul] = "",
) -> Response:
    created = auth.create_token(session, principal.user, TokenCreate(name=name))
    tokens = auth.list_tokens(session, principal.user)
    response = render(request, "account.html", {"tokens": tokens, "new_token": created}, status_code=201)
    response.headers["cache-control"] = "no-store"
    return response


@router.post("/account/tokens/{token_id}/revoke")
def account_revoke_token(token_id: int, principal: AnnotatorDep, session: SessionDep) -> Response:
    auth.revoke_token(session, token_id, actor=principal.user)
    return RedirectResponse("/account", status_code=303)
