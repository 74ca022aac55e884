"""`emo version`."""

from __future__ import annotations

from rich import print as rprint

from emo_cli import __version__
from emo_cli.backends import backend_names
from emo_cli.cli import app


@app.command()
def version() -> None:
    """Print the emo-cli version and the installed backends."""
    rprint(f"emo-cli {__version__}")
    rprint("backends: " + ", ".join(backend_names()))
