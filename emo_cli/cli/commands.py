"""The built-in commands, by name: the module under `emo_cli.cli` that registers each on the
app, in the order the help lists them.

A command's module is imported, and its Click command built, when the command is first needed
(to run it, or to list it in the help), so `emo validate` neither imports nor builds the
others. Commands that installed packages contribute (`emo weights` is the emo backend's) join
through `plugins`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

BUILTIN = {
    "clean": "clean",
    "init": "init",
    "inspect": "inspect",
    "plan": "plan",
    "qc": "qc",
    "render": "render",
    "report": "report",
    "schema": "schema",
    "status": "status",
    "validate": "validate",
    "verify": "verify",
    "version": "version",
    "dataset": "dataset",
    "train": "train",
}


def _registration(name: str) -> Any:
    """The CommandInfo (or, for a group, TyperInfo) that built-in command `name` registers on the
    app, its module imported; None if `name` is not one."""
    if name not in BUILTIN:
        return None
    import typer.main

    from emo_cli.cli import app

    import_module(f"emo_cli.cli.{BUILTIN[name]}")  # registers the command on `app`
    for info in app.registered_commands:
        if (info.name or typer.main.get_command_name(info.callback.__name__)) == name:
            return info
    for group in app.registered_groups:
        if group.name == name or group.typer_instance.info.name == name:
            return group
    return None


def builtin_command(name: str) -> Any:
    """The Click command (or group) of the built-in command `name`, built as Typer builds the
    app's; None if `name` is not one."""
    import typer.main

    from emo_cli.cli import app

    info = _registration(name)
    if isinstance(info, typer.main.CommandInfo):
        return typer.main.get_command_from_info(info, pretty_exceptions_short=app.pretty_exceptions_short,
                                                rich_markup_mode=app.rich_markup_mode)  # fmt: skip
    if isinstance(info, typer.main.TyperInfo):
        return typer.main.get_group_from_info(info, pretty_exceptions_short=app.pretty_exceptions_short,
                                              rich_markup_mode=app.rich_markup_mode,
                                              suggest_commands=app.suggest_commands)  # fmt: skip
    return None


def builtin_summary(name: str) -> str:
    """What `emo --help` lists for built-in command `name`: its help's first sentence, read from
    its registration without building the command (and its options)."""
    import inspect

    import typer.main
    from typer.core import TyperCommand

    info = _registration(name)
    if isinstance(info, typer.main.CommandInfo) and not (info.short_help or info.deprecated):
        text = inspect.cleandoc(info.help) if info.help is not None else inspect.getdoc(info.callback) or ""
    elif isinstance(info, typer.main.TyperInfo) and not (info.short_help or info.deprecated):
        text = typer.main.solve_typer_info_help(info)
    else:
        return builtin_command(name).get_short_help_str(limit=1000)
    return TyperCommand(name, help=text).get_short_help_str(limit=1000)
