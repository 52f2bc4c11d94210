"""
Operator accounts and API keys.

Passwords are argon2 hashes. API keys are long random strings, so a SHA-256 of the key is
enough to look one up and cannot be reversed; the key is shown once, at creation.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal, get_args

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from collect.dedupe.keys import sha256_hex
from collect.store import Store
from collect.store.tables import API_KEY, AUDIT, USER, utcnow

Role = Literal["admin", "operator", "clerk", "viewer"]
ROLES: tuple[Role, ...] = get_args(Role)
# What each role may do, from most to least: a route names the least role it needs.
ROLE_RANK: dict[str, int] = {"viewer": 0, "clerk": 1, "operator": 2, "admin": 3}
_hasher = PasswordHasher()


class AccessError(ValueError):
    """A user or key that cannot be created (duplicate name, weak password, unknown role)."""


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    role: Role


def create_user(store: Store, name: str, role: str, password: str, *, actor: str) -> Account:
    if role not in ROLES:
        raise AccessError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if len(password) < 10:
        raise AccessError("a password needs at least 10 characters")
    with store.engine.begin() as connection:
        if connection.execute(sa.select(USER.c.id).where(USER.c.name == name)).first() is not None:
            raise AccessError(f"user {name!r} exists already")
        user_id = connection.execute(
            sa.insert(USER)
            .values(
                name=name,
                role=role,
                password_hash=_hasher.hash(password),
                created_at=utcnow(),
                disabled=False,
            )
            .returning(USER.c.id)
        ).scalar_one()
        connection.execute(
            sa.insert(AUDIT).values(
                at=utcnow(), actor=actor, action="user.create", target=name, detail={"role": role}
            )
        )
    return Account(user_id, name, role)


def authenticate(store: Store, name: str, password: str) -> Account | None:
    """The account for a right name and password, else None (same answer for either wrong)."""
    with store.engine.connect() as connection:
        row = connection.execute(
            sa.select(USER).where(USER.c.name == name, USER.c.disabled.is_(False))
        ).first()
    if row is None:
        # Spend the same time as a real check, so a wrong name is not told apart by timing.
        _hasher.hash(password)
        return None
    try:
        _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return Account(row.id, row.name, row.role)


def create_api_key(store: Store, name: str, *, actor: str) -> str:
    """Create a key and return it; it is not kept and cannot be shown again."""
    key = f"ck_{secrets.token_urlsafe(32)}"
    with store.engine.begin() as connection:
        if connection.execute(sa.select(API_KEY.c.id).where(API_KEY.c.name == name)).first() is not None:
            raise AccessError(f"API key {name!r} exists already")
        connection.execute(
            sa.insert(API_KEY).values(
                name=name, prefix=key[:8], key_sha256=sha256_hex(key), created_at=utcnow()
            )
        )
        connection.execute(
            sa.insert(AUDIT).values(
                at=utcnow(), actor=actor, action="apikey.create", target=name, detail={"prefix": key[:8]}
            )
        )
    return key


def api_key_id(store: Store, key: str) -> int | None:
    """The id of a live API key, else None."""
    # A read: on SQLite it must not queue for the writer (engine.connect() begins IMMEDIATE).
    with store.reader.connect() as connection:
        row = connection.execute(
            sa.select(API_KEY.c.id).where(
                API_KEY.c.key_sha256 == sha256_hex(key), API_KEY.c.revoked_at.is_(None)
            )
        ).first()
    return None if row is None else int(row.id)
