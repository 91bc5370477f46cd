"""Who is calling: tokens, stored hashed, each acting for a tenant (users) or for the workers."""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from service.errors import InvalidSpec, NotFound
from service.storage.database import Database
from service.storage.tables import TokenRecord, as_utc, utc_now

DEFAULT_TENANT = "default"
# A tenant's name: shown in listings and logs, one line, no spaces.
TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")  # the columns hold 64
MAX_TOKEN_NAME = 128  # the column holds 128


class Role(enum.StrEnum):
    """What a token may do: users define and read studies; workers only run trials."""

    USER = "user"
    WORKER = "worker"


@dataclass(frozen=True)
class Principal:
    """The caller: a tenant's user, or a worker (``tenant`` None: it serves every tenant)."""

    tenant: str | None
    role: Role


ANONYMOUS = Principal(DEFAULT_TENANT, Role.USER)
WORKER = Principal(None, Role.WORKER)  # what a worker token acts as


def token_hash(token: str) -> str:
    """SHA-256 of a token: tokens are 32 random bytes, so a fast hash is enough to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Creates, checks, lists and revokes tokens in ``hpo_tokens``."""

    def __init__(
        self,
        database: Database,
        static_tokens: frozenset[str] = frozenset(),
        static_worker_tokens: frozenset[str] = frozenset(),
    ) -> None:
        self._database = database
        self._static = {token_hash(token) for token in static_tokens}
        self._static_workers = {token_hash(token) for token in static_worker_tokens}

    def create(
        self,
        role: Role,
        tenant: str | None,
        name: str = "",
        valid_for: timedelta | None = None,
    ) -> tuple[int, str]:
        """A new token: its id and the token itself, which is not stored and not shown again.
        ``valid_for``: how long it works (``None``: until revoked)."""
        if valid_for is not None and valid_for <= timedelta(0):
            raise InvalidSpec(
                f"a token's lifetime must be positive, not {valid_for}", field="valid_for"
            )
        if role is Role.USER and (tenant is None or not TENANT_NAME.fullmatch(tenant)):
            raise InvalidSpec(
                f"a user token needs a tenant: a name of {TENANT_NAME.pattern}, not {tenant!r}",
                field="tenant",
            )
        if len(name) > MAX_TOKEN_NAME or not name.isprintable():
            raise InvalidSpec(
                f"a token's name is at most {MAX_TOKEN_NAME} printable characters (no tab or line "
                f"break), not {len(name)}: {name[:40]!r}",
                field="name",
            )
        token = secrets.token_urlsafe(32)
        record = TokenRecord(
            token_hash=token_hash(token),
            tenant=tenant if role is Role.USER else None,
            role=role.value,
            name=name,
            expires_at=None if valid_for is None else utc_now() + valid_for,
        )
        with self._database.session() as session:
            session.add(record)
            session.flush()
            return record.token_id, token

    def authenticate(self, token: str) -> Principal | None:
        """The principal a token acts for; ``None`` for an unknown, revoked or expired token."""
        digest = token_hash(token)
        if any(hmac.compare_digest(digest, known) for known in self._static):
            return ANONYMOUS
        if any(hmac.compare_digest(digest, known) for known in self._static_workers):
            return WORKER
        with self._database.session() as session:
            query = select(TokenRecord).where(TokenRecord.token_hash == digest)
            record = session.scalars(query).first()
        if record is None or record.revoked or has_expired(record):
            return None
        return Principal(record.tenant, Role(record.role))

    def all(self) -> list[TokenRecord]:
        """Every token (hashes only), oldest first."""
        with self._database.session() as session:
            return list(session.scalars(select(TokenRecord).order_by(TokenRecord.token_id)))

    def revoke(self, token_id: int) -> None:
        """The token stops working at once."""
        with self._database.session() as session:
            record = session.get(TokenRecord, token_id)
            if record is None:
                raise NotFound(f"no token with id {token_id}", field="token_id")
            record.revoked = True


def has_expired(record: TokenRecord) -> bool:
    """Whether the token's lifetime is over (one without an end never expires)."""
    return record.expires_at is not None and as_utc(record.expires_at) <= utc_now()
