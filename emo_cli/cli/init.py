"""`emo init [DIR]`: a starter manifest plus the JSON Schema editors validate it against."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emo_cli.cli import app


@app.command()
def init(
    directory: Annotated[
        Path, typer.Argument(help="Folder to write manifest.yaml and the schema into.")
    ] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that already exist.")] = False,
) -> None:
    """Write a commented starter manifest.yaml and emo-manifest.schema.json."""
    from emo_cli.manifest.starter import write_starter

    for path in write_starter(directory, force=force):
        typer.echo(f"wrote {path}")
    typer.echo("next: put portrait.jpg and speech.wav beside it (or edit the paths), then run emo validate")
