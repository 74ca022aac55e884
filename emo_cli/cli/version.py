"""`emo version`."""

from __future__ import annotations

import typer

from emo_cli.cli import app


@app.command()
def version() -> None:
    """Print the emo-cli version and the installed backends."""
    from emo_cli import __version__
    from emo_cli.backends.registry import backend_names

    typer.echo(f"emo-cli {__version__}")
    typer.echo("backends: " + ", ".join(backend_names()))
