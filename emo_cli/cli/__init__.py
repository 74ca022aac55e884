"""The `emo` command line: a thin Typer layer over the library.

Each command module parses its options, calls one public function and prints the result. An
`EmoError` becomes its message and exit code; anything else is a bug and shows a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from emo_cli.cli.plugins import PluginCommands
from emo_cli.errors import EmoError

app = typer.Typer(
    cls=PluginCommands,  # the built-in commands, and those installed packages contribute
    name="emo",
    help="Turn a portrait and an audio track into a talking or singing video.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # emo --install-completion / --show-completion (bash, zsh, fish, PowerShell)
)
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from emo_cli import __version__

        typer.echo(f"emo-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Turn a portrait and an audio track into a talking or singing video."""
    if ctx.default_map is None:  # the user config file's option defaults (cli/config.py)
        from emo_cli.cli.config import load_defaults

        ctx.default_map = load_defaults(ctx.command, ctx, ctx.invoked_subcommand)

# Command modules register themselves on `app` when imported.
from emo_cli.cli import commands  # noqa: E402,F401


def main() -> None:
    try:
        app()  # standalone: click handles usage errors (exit 2) and Ctrl-C itself
    except EmoError as exc:
        if os.environ.get("EMO_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
