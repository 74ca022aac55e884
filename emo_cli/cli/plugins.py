"""Commands contributed by installed packages, through the `emo_cli.commands` entry-point group.

Backends register in `emo_cli.backends`; a package can also add commands to `emo` here, by
name: a Typer app becomes a command group (`emo weights init`, the emo backend's), a function
one command. A contribution that cannot be loaded, whatever it raises, still shows under its
name and fails with one clear error when used; every other command works as before.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import typer

from emo_cli.errors import BackendError

GROUP = "emo_cli.commands"


def add_plugin_commands(app: typer.Typer) -> None:
    """Add every installed contribution to `app`, in name order."""
    for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            command = entry.load()
        except Exception as exc:  # a broken plugin must not take the other commands down
            _add_unavailable(app, entry, f"{type(exc).__name__}: {exc}")
            continue
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=entry.name)
        elif callable(command):
            app.command(name=entry.name)(command)
        else:
            _add_unavailable(app, entry, "it is neither a Typer app nor a function")


def _add_unavailable(app: typer.Typer, entry: EntryPoint, reason: str) -> None:
    message = (f"the `emo {entry.name}` command ({entry.value}) cannot be loaded ({reason}); "
               "reinstall or upgrade the package that provides it")  # fmt: skip

    @app.command(name=entry.name, help=f"Unavailable: {message}", add_help_option=False,
                 context_settings={"ignore_unknown_options": True, "allow_extra_args": True})  # fmt: skip
    def unavailable() -> None:
        raise BackendError(message)
