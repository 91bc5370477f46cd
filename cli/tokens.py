"""``hpo token``: create, list and revoke API tokens (run where the database is reachable)."""

from __future__ import annotations

from typing import Annotated

import typer

from service.settings import Settings
from service.storage.database import Database
from service.tokens import Role, TokenStore

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
) -> None:
    """Create a token and print it: it is stored hashed and cannot be shown again."""
    if worker and tenant is not None:
        raise typer.BadParameter("give --tenant for a user token or --worker, not both")
    if not worker and tenant is None:
        raise typer.BadParameter("give --tenant (the tenant's name) for a user token, or --worker")
    role = Role.WORKER if worker else Role.USER
    token_id, token = _store().create(role, tenant, name)
    typer.echo(
        f"token {token_id} ({role.value}{', tenant ' + tenant if tenant else ''}):", err=True
    )
    typer.echo(token)


@tokens_app.command("list")
def list_tokens() -> None:
    """Every token: id, role, tenant, name, whether revoked (never the token itself)."""
    for record in _store().all():
        revoked = " revoked" if record.revoked else ""
        typer.echo(
            f"{record.token_id}\t{record.role}\t{record.tenant or '-'}\t{record.name}{revoked}"
        )


@tokens_app.command("revoke")
def revoke(token_id: int) -> None:
    """Revoke a token: it stops working at once."""
    _store().revoke(token_id)
    typer.echo(f"token {token_id} revoked")
