"""`emo schema`: the manifest JSON Schema, with the options of every installed backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from emo_cli.cli import app


@app.command()
def schema(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the schema to this file instead of printing it."),
    ] = None,
) -> None:
    """Print the manifest JSON Schema (draft 2020-12) for editors and CI."""
    from emo_cli.fsutil import atomic_write_text
    from emo_cli.manifest import effective_schema

    text = json.dumps(effective_schema(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    atomic_write_text(output, text)
    typer.echo(f"wrote {output}")
