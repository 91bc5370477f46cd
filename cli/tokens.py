"""``hpo token``: create, list and revoke API tokens (run where the database is reachable)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

import typer

from service.settings import Settings
from service.storage.database import Database
from service.storage.tables import TokenRecord, as_utc
from service.tokens import Role, TokenStore, has_expired

LIFETIME = re.compile(r"(?P<count>\d+)(?P<unit>[dhms])")
LONGEST_LIFETIME = timedelta(days=36500)  # 100 years: an expiry a date can hold
LIFETIME_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
tokens_app = typer.Typer(help="API tokens: created here, stored hashed, shown once.")


def _store() -> TokenStore:
    return TokenStore(Database(Settings().database_url))


@tokens_app.command("create")
def create(
    tenant: Annotated[str | None, typer.Option(help="The tenant a user token acts for")] = None,
    worker: Annotated[
        bool, typer.Option("--worker", help="A worker token (every tenant's trials)")
    ] = False,
    name: Annotated[str, typer.Option(help="A note to recognise the token by")] = "",
    expires_in: Annotated[
        str | None,
        typer.Option(help="How long it works, e.g. 90d, 12h, 30m (default: until revoked)"),
    ] = None,
) -> None:
    """Create a token and print it: it is stored hashed and cannot be shown again."""
    if worker and tenant is not None:
        raise typer.BadParameter("give --tenant for a user token or --worker, not both")
    if not worker and tenant is None:
        raise typer.BadParameter("give --tenant (the tenant's name) for a user token, or --worker")
    role = Role.WORKER if worker else Role.USER
    valid_for = None if expires_in is None else lifetime(expires_in)
    token_id, token = _store().create(role, tenant, name, valid_for)
    until = "" if valid_for is None else f", for {expires_in}"
    typer.echo(
        f"token {token_id} ({role.value}{', tenant ' + tenant if tenant else ''}{until}):",
        err=True,
    )
    typer.echo(token)


@tokens_app.command("list")
def list_tokens() -> None:
    """Every token, one a line under a header: id, role, tenant, name, and whether it is active,
    revoked or when it expires (never the token itself)."""
    records = _store().all()
    if not records:
        typer.echo("no tokens yet: hpo token create --tenant NAME makes one", err=True)
        return
    typer.echo("id\trole\ttenant\tname\tstatus")
    for record in records:
        typer.echo(
            f"{record.token_id}\t{record.role}\t{record.tenant or '-'}\t{record.name or '-'}"
            f"\t{_standing(record)}"
        )


def _standing(record: TokenRecord) -> str:
    if record.revoked:
        return "revoked"
    if record.expires_at is None:
        return "active"
    ends = as_utc(record.expires_at).isoformat(timespec="seconds")
    return f"expired {ends}" if has_expired(record) else f"expires {ends}"


def lifetime(text: str) -> timedelta:
    """A token's lifetime from ``90d``, ``12h``, ``30m`` or ``45s`` (a whole number and a unit)."""
    found = LIFETIME.fullmatch(text.strip())
    if found is None or int(found["count"]) == 0:
        raise typer.BadParameter(
            f"{text!r} is not a lifetime: a whole number above 0 and d, h, m or s, e.g. 90d"
        )
    count = int(found["count"])
    if count > LONGEST_LIFETIME / timedelta(**{LIFETIME_UNITS[found["unit"]]: 1}):
        raise typer.BadParameter(
            f"{text!r} is longer than a token may live: at most 36500d (100 years); leave "
            "--expires-in out for a token that works until revoked"
        )
    return timedelta(**{LIFETIME_UNITS[found["unit"]]: count})


@tokens_app.command("revoke")
def revoke(token_id: int) -> None:
    """Revoke a token: it stops working at once."""
    _store().revoke(token_id)
    typer.echo(f"token {token_id} revoked")
