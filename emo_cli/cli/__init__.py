"""The `emo` command line: a thin Typer layer over the library.

Each command module parses its options, calls one public function and prints the result. An
`EmoError` becomes its message and exit code; anything else is a bug and shows a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from emo_cli.cli.plugins import PluginCommands
from emo_cli.errors import EmoError

app = typer.Typer(
    cls=PluginCommands,  # the built-in commands, and those installed packages contribute
    name="emo",
    help="Turn a portrait and an audio track into a talking or singing video.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help, as Click writes it: Typer's rich help costs a tenth of a second at every
    # `emo --help`, and nothing in the help texts uses markup.
    rich_markup_mode=None,
    add_completion=True,  # emo --install-completion / --show-completion (bash, zsh, fish, PowerShell)
)


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

# Command modules register themselves on `app` when imported: `commands` imports each when it
# is first needed.


def main() -> None:
    try:
        app()  # standalone: click handles usage errors (exit 2) and Ctrl-C itself
    except EmoError as exc:
        if os.environ.get("EMO_DEBUG"):
            raise
        from rich.console import Console  # only on the error path: `emo --help` never imports rich
        from rich.markup import escape

        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
