"""`emo validate MANIFEST`: every problem at once, one `file:line:col path: sentence` per line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emo_cli.cli import app
from emo_cli.errors import ManifestError


@app.command()
def validate(
    manifest: Annotated[Path, typer.Argument(help="The manifest YAML file to check.", show_default=False)],
    deep: Annotated[
        bool,
        typer.Option(
            "--deep",
            help="Also find the face in every portrait a job uses (no face, too small, several), with the "
            "bundled face detector (about a second more).",
        ),
    ] = False,
) -> None:
    """Check a manifest (schema, names, files, outputs, backends, consent) without rendering;
    with --deep, the faces in its portraits too.

    Exits 0 when it is valid, 2 when it is not.
    """
    from emo_cli.api import validate_manifest

    problems = validate_manifest(manifest, deep=deep)
    if problems:
        for problem in problems:
            typer.echo(str(problem), err=True)
        count = len(problems)
        typer.echo(f"{manifest}: {count} problem{'s' if count != 1 else ''}", err=True)
        raise typer.Exit(ManifestError.exit_code)
    typer.echo(f"{manifest}: valid")
