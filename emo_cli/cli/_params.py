"""Plain `str`, `Path` and `bool` values of the command line, converted without Pydantic.

Typer converts every option and argument value through a Pydantic `TypeAdapter`, and importing
Pydantic costs about as much as the rest of `emo validate`. The two types nearly every command
takes need none of it, nor do flags: a string or a bool is kept as it is, a path becomes a
`Path` and goes through Typer's own checks (`coerce_cli_path`: exists, file or folder,
readable...), so the values and the usage errors are Typer's. Every other parameter (numbers
with bounds, lists, choices), and any value of an unexpected type, keeps Typer's conversion. This leans on Typer's internals (`typer._coercion`); if they change, no
parameter is touched and every value is converted the Typer way (tests/cli/test_startup.py
then notices that Pydantic is back).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    from typer._coercion import RuntimeParam, build_runtime_param
    from typer._param_types import coerce_cli_path
except ImportError:  # another Typer: leave its conversion alone
    RuntimeParam = None  # type: ignore[assignment,misc]

PLAIN_TYPES = (str, Path, bool)

if RuntimeParam is not None:

    @dataclass(frozen=True)
    class PlainValue(RuntimeParam):  # type: ignore[misc,valid-type]
        """A `str` or a `bool` kept as is, a `Path` checked by Typer's `coerce_cli_path`; any
        other value (a flag's string from the environment...) converted the Typer way."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if self.annotation is Path and isinstance(value, (str, Path)):
                path = Path(value) if isinstance(value, str) else value
                return coerce_cli_path(path, self.parameter_info, path_type=Path, param=param, ctx=ctx)
            if self.annotation is not Path and isinstance(value, self.annotation):
                return value
            return build_runtime_param(param.type_descriptor)._coerce_value(value, param=param, ctx=ctx)


def _plain(param: Any) -> bool:
    """Whether `param` takes one plain `str`, `Path` or `bool` value: no parser, no file, no
    other path type."""
    descriptor = getattr(param, "type_descriptor", None)
    info = getattr(descriptor, "parameter_info", None)
    if info is None or getattr(info, "parser", True) is not None or descriptor.file_annotation is not None:
        return False
    if descriptor.annotation is Path:
        return getattr(info, "path_type", True) is None
    return descriptor.annotation in (str, bool)


def convert_plainly(command: Any, ctx: Any) -> None:
    """Give the plain `str`, `Path` and `bool` parameters of `command` (its --help included)
    and of its subcommands the light conversion."""
    if RuntimeParam is None:
        return
    help_option = command.get_help_option(ctx) if hasattr(command, "get_help_option") else None
    for param in [*getattr(command, "params", ()), *([help_option] if help_option is not None else [])]:
        if getattr(param, "_runtime_param", False) is None and _plain(param):
            param._runtime_param = PlainValue(parameter_info=param.type_descriptor.parameter_info,
                                              annotation=param.type_descriptor.annotation)  # fmt: skip
    for sub in getattr(command, "commands", {}).values():
        convert_plainly(sub, ctx)
