"""REST for the caller's identity, API tokens and (admins) user management."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.auth import service as auth
from app.auth.schemas import TokenCreate, TokenCreated, TokenRead, UserCreate, UserRead, UserUpdate
from app.deps import AdminDep, AnnotatorDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["auth"])


@router.get("/me", response_model=UserRead)
def me(principal: AnnotatorDep) -> UserRead:
    return UserRead.model_validate(principal.user)


@router.get("/tokens", response_model=list[TokenRead])
def list_tokens(principal: AnnotatorDep, session: SessionDep) -> list[TokenRead]:
    return auth.list_tokens(session, principal.user)


@router.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(body: TokenCreate, principal: AnnotatorDep, session: SessionDep) -> TokenCreated:
    return auth.create_token(session, principal.user, body)


@router.delete("/tokens/{token_id}", response_model=TokenRead)
def revoke_token(token_id: int, principal: AnnotatorDep, session: SessionDep) -> TokenRead:
    return auth.revoke_token(session, token_id, actor=principal.user)


@router.get("/users", response_model=list[UserRead])
def list_users(principal: AdminDep, session: SessionDep) -> list[UserRead]:
    return auth.list_users(session)


@router.post("/users", response_model=UserRead, status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, principal: AdminDep, session: SessionDep) -> UserRead:
    return UserRead.model_validate(auth.create_user(session, body))


@router.patch("/users/{user_id}", response_model=UserRead)
def update_user(user_id: int, body: UserUpdate, principal: AdminDep, session: SessionDep) -> UserRead:
    user = auth.update_user(session, user_id, body, actor=principal.user)
    return auth.read_user(user, auth.locked_addresses(session))
