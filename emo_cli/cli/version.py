"""`emo version`."""

from __future__ import annotations

from rich import print as rprint

from emo_cli.cli import app


@app.command()
def version() -> None:
    """Print the emo-cli version and the installed backends."""
    from emo_cli import __version__
    from emo_cli.backends.registry import backend_names

    rprint(f"emo-cli {__version__}")
    rprint("backends: " + ", ".join(backend_names()))
