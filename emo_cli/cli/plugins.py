"""The `emo` command group: the built-in commands (`commands`, each loaded on first need) and
those installed packages contribute through the `emo_cli.commands` entry-point group.

Backends register in `emo_cli.backends`; a package can also add commands to `emo` here, by
name: a Typer app becomes a command group (`emo weights init`, the emo backend's), a function
one command. They are looked up only when needed: when the help lists the commands, or when a
command name is not a built-in one; `emo validate` never reads the entry points. A contribution
that cannot be loaded, whatever it raises, still shows under its name and fails with one clear
error when used; every other command works as before.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

import typer
from typer._click.exceptions import UsageError as ClickUsageError
from typer.core import TyperGroup

from emo_cli.cli._params import convert_plainly
from emo_cli.cli.commands import BUILTIN, builtin_command, builtin_summary
from emo_cli.errors import BackendError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

GROUP = "emo_cli.commands"


class CommandGroup(TyperGroup):
    """A group whose help lists each command with its first sentence whole, wrapped (Click's
    default cuts it at the line's end with `...`)."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = [(name, summary) for name in self.list_commands(ctx)
                if (summary := self.summary(ctx, name)) is not None]  # fmt: skip
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def summary(self, ctx: Any, name: str) -> str | None:
        """The help line of command `name`; None for a hidden one."""
        command = self.get_command(ctx, name)
        return None if command is None or command.hidden else command.get_short_help_str(limit=1000)


class PluginCommands(CommandGroup):
    """The `emo` group: the built-in commands (see `commands`), then the contributed ones, each
    loaded on first need."""

    _contributed: dict[str, Any] | None = None

    def _contributions(self) -> dict[str, Any]:
        if self._contributed is None:
            self._contributed = {name: command for name, command in contributed_commands()
                                 if name not in self.commands and name not in BUILTIN}  # fmt: skip
        return self._contributed

    def list_commands(self, ctx: Any) -> list[str]:
        registered = [name for name in super().list_commands(ctx) if name not in BUILTIN]
        return [*BUILTIN, *registered, *sorted(self._contributions())]

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except ClickUsageError as exc:
            # Typer suggests among the commands built so far; the built-in ones are built on need.
            if self.suggest_commands and args and "Did you mean" not in exc.message:
                matches = difflib.get_close_matches(args[0], self.list_commands(ctx))
                if matches:
                    suggestions = ", ".join(f"{m!r}" for m in matches)
                    exc.message = f"{exc.message.rstrip('.')}. Did you mean {suggestions}?"
            raise

    def summary(self, ctx: Any, name: str) -> str | None:
        if name in BUILTIN and name not in self.commands:
            return builtin_summary(name)  # the help needs no built command, nor its options
        return super().summary(ctx, name)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        convert_plainly(self, ctx)  # the commands' values, converted without Pydantic (see _params)
        return super().parse_args(ctx, args)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        command = builtin_command(cmd_name)
        if command is not None:
            self.add_command(command, cmd_name)
        else:
            command = self._contributions().get(cmd_name)
        if command is not None:
            convert_plainly(command, ctx)
        return command


def contributed_commands() -> list[tuple[str, Any]]:
    """(name, click command) of every installed contribution, in name order."""
    from importlib.metadata import entry_points

    out = []
    for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            contribution = entry.load()
        except Exception as exc:  # a broken plugin must not take the other commands down
            out.append((entry.name, _unavailable(entry, f"{type(exc).__name__}: {exc}")))
            continue
        if isinstance(contribution, typer.Typer):
            if not isinstance(contribution.info.cls, type):  # no group class of its own: list its
                contribution.info.cls = CommandGroup  # commands' first sentences whole, as `emo` does
            out.append((entry.name, typer.main.get_group(contribution)))
        elif callable(contribution):
            single = typer.Typer(rich_markup_mode=None)
            single.command(name=entry.name)(contribution)
            out.append((entry.name, typer.main.get_command(single)))
        else:
            out.append((entry.name, _unavailable(entry, "it is neither a Typer app nor a function")))
    return out


def _unavailable(entry: EntryPoint, reason: str) -> Any:
    message = (f"the `emo {entry.name}` command ({entry.value}) cannot be loaded ({reason}); "
               "reinstall or upgrade the package that provides it")  # fmt: skip
    single = typer.Typer(rich_markup_mode=None)

    @single.command(name=entry.name, help=f"Unavailable: {message}", add_help_option=False,
                    context_settings={"ignore_unknown_options": True, "allow_extra_args": True})  # fmt: skip
    def unavailable() -> None:
        raise BackendError(message)

    return typer.main.get_command(single)
