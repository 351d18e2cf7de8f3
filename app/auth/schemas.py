from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from app.db.enums import Role
from app.fields import OptionalText, Text

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
USERNAME_RULE = "1 to 64 characters: letters, digits and _ . @ -, starting with a letter or digit"


def _username_allowed(v: str) -> str:
    # checked here rather than by Field(pattern=...): pydantic's message would show users the regex
    if not re.fullmatch(USERNAME_PATTERN, v):
        raise ValueError(f"use {USERNAME_RULE}")
    return v


class UserCreate(BaseModel):
    username: Annotated[str, AfterValidator(_username_allowed)] = Field(
        description="letters, digits, _ . @ -; stored lower-case", json_schema_extra={"pattern": USERNAME_PATTERN})
    password: str = Field(min_length=8, max_length=256)
    role: Role = Role.annotator
    display_name: Text = Field("", max_length=128)

    @field_validator("username")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()


class UserUpdate(BaseModel):
    role: Role | None = None
    is_active: bool | None = None
    display_name: OptionalText = Field(None, max_length=128)
    password: str | None = Field(
        None,
        min_length=8,
        max_length=256,
        description="a new password; ends the user's sessions and revokes their API tokens",
    )
    unlock: bool | None = Field(None, description="true: lift a lock-out after repeated failed log-ins")


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: Role
    is_active: bool
    pseudonym: str
    created_at: datetime
    last_login_at: datetime | None
    locked_until: datetime | None = Field(
        None, description="log-in refused from every address until then (too many failures from all addresses)"
    )
    locked_addresses: int = Field(
        0, description="client addresses refused log-in to this account now, after repeated failures from each"
    )


class TokenCreate(BaseModel):
    name: Text = Field("", max_length=100)
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class TokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    token: str = Field(description="the bearer token; shown once, only its hash is stored")
