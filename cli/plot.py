"""``hpo plot ID --out DIR``: the study's figures as PNG files, fetched from the API.

The API draws them with Optuna's matplotlib visualisation (``GET /studies/{id}/plots/{kind}.png``);
a figure the study has not got the trials for yet (409) is skipped with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from client.errors import ConflictError
from client.typed_client import HPOClient

PLOT_KINDS = ("history", "intermediate", "importance", "parallel_coordinate")


def save_plots(
    client: HPOClient, study_id: int, out: Path, kinds: tuple[str, ...] = PLOT_KINDS
) -> list[Path]:
    """Write ``<out>/study-<id>-<kind>.png`` for each kind the study can be drawn in. Every
    figure is fetched first: an unknown study or a service out of reach leaves no folder behind."""
    figures = _drawable_figures(client, study_id, kinds)
    if figures:
        out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, png in figures.items():
        path = out / f"study-{study_id}-{kind}.png"
        path.write_bytes(png)
        written.append(path)
    return written


def _drawable_figures(client: HPOClient, study_id: int, kinds: tuple[str, ...]) -> dict[str, bytes]:
    """Each kind's PNG, skipping (with the API's reason) those the study has not the trials for."""
    figures = {}
    for kind in kinds:
        try:
            figures[kind] = client.plot(study_id, kind)
        except ConflictError as error:
            typer.echo(f"skipped {kind}: {error}", err=True)
    return figures


def plot_command(
    study_id: int,
    out: Annotated[Path, typer.Option(file_okay=False, help="Folder for the PNG files")] = Path(
        "plots"
    ),
) -> None:
    """Save the study's figures as PNG (history, intermediate values, importances, parallel
    coordinates) in OUT."""
    from cli.watch import settings_client

    written = save_plots(settings_client(), study_id, out)
    for path in written:
        typer.echo(str(path))
    if not written:
        raise typer.Exit(1)
