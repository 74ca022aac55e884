"""`emo inspect VIDEO`: show the provenance stored in a video file (no sidecar needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from emo_cli.cli import app


@app.command()
def inspect(
    video: Annotated[
        Path, typer.Argument(help="The video to inspect.", exists=True, dir_okay=False, readable=True)
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the tags as one JSON object.")] = False,
) -> None:
    """Print the provenance tags of a video; exit 1 if it carries none from emo-cli."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from emo_cli.provenance.tags import has_provenance, read_tags

    tags = read_tags(video)
    found = has_provenance(tags)
    console = Console()
    if as_json:
        typer.echo(json.dumps({"file": str(video), "emo_provenance": found, "tags": tags}, indent=1))
    elif not found:
        Console(stderr=True).print(f"{escape(str(video))} has no emo provenance", highlight=False)
    else:
        table = Table(title=escape(str(video)), title_justify="left", show_header=False)
        table.add_column("tag", style="bold")
        table.add_column("value", overflow="fold")
        for key, value in tags.items():
            table.add_row(key, escape(value))
        console.print(table)
    raise typer.Exit(0 if found else 1)
