"""Who is calling, as far as most of the app cares: an account's id, names and role."""

from __future__ import annotations

from typing import Protocol


class UserIdentity(Protocol):
    """What a request knows of its caller's account (the ORM `User` today). Code that only needs
    to know who is calling takes this; code that changes the account loads the `User`."""

    @property
    def id(self) -> int: ...
    @property
    def username(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def pseudonym(self) -> str: ...
