"""The user config file: defaults for command options, one TOML table per command.

    # ~/.config/emo-cli/config.toml (or $EMO_CONFIG)
    [render]
    devices = "cuda:0,1"
    heartbeat = 10
    log-file = "emo-events.jsonl"

The file is `EMO_CONFIG` when set (empty: no file), else `config.toml` in emo-cli's config
folder (`EMO_CONFIG_DIR`, else the platform's: `~/.config/emo-cli` on Linux), beside the local
signing identity. It becomes click's `default_map`, so a value given on the command line wins,
then the option's environment variable, then the file, then the built-in default. It is read only
when a command runs (never for `--help`), with nothing heavier than `tomllib`; the table of the
command that runs is checked against its options, and a mistake is an error naming the file and
the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from emo_cli.errors import UsageError

CONFIG_ENV = "EMO_CONFIG"
CONFIG_DIR_ENV = "EMO_CONFIG_DIR"  # the folder `emo_cli.provenance.identity` keeps its files in
CONFIG_NAME = "config.toml"


def config_path() -> Path | None:
    """The user config file to read, or None (`EMO_CONFIG` set to an empty string)."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit is not None:
        return Path(explicit).expanduser() if explicit else None
    folder = os.environ.get(CONFIG_DIR_ENV)
    if folder:
        return Path(folder).expanduser() / CONFIG_NAME
    import platformdirs

    return Path(platformdirs.user_config_dir("emo-cli")) / CONFIG_NAME


def load_defaults(group: Any, ctx: typer.Context, command: str | None) -> dict[str, Any] | None:
    """The config file as a `default_map` for `group`'s commands (None without a file), with
    `command`'s table checked against its options."""
    path = config_path()
    if path is None:
        return None
    if not path.is_file():
        if os.environ.get(CONFIG_ENV):  # named explicitly: it must be there
            raise UsageError(f"config file {path} ({CONFIG_ENV}) does not exist")
        return None
    import tomllib

    try:
        with path.open("rb") as stream:
            document = tomllib.load(stream)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"config file {path}: {exc}") from None
    for name, table in document.items():
        if not isinstance(table, dict):
            raise UsageError(f"config file {path}: {name} = ...: expected a table, [{name}], of that command's options")
        target = group.get_command(ctx, name)
        if target is None:
            raise UsageError(f"config file {path}: [{name}]: `emo` has no such command")
        document[name] = _checked(path, target, table, name) if name == command else _normalised(table)
    return document


def _normalised(table: dict[str, Any]) -> dict[str, Any]:
    """Keys as click names parameters: `log-file` and `log_file` are the same option."""
    return {key.replace("-", "_"): value for key, value in table.items()}


def _checked(path: Path, command: Any, table: dict[str, Any], where: str) -> dict[str, Any]:
    """`table` checked against `command`'s options (a command group's: its commands' tables)."""
    if hasattr(command, "get_command"):  # a group, e.g. `emo weights`
        ctx = typer.Context(command)
        for name, sub in table.items():
            target = command.get_command(ctx, name)
            if target is None or not isinstance(sub, dict):
                raise UsageError(f"config file {path}: [{where}.{name}]: `emo {where}` has no such command")
            table[name] = _checked(path, target, sub, f"{where}.{name}")
        return table
    options: dict[str, Any] = {}  # by its long flag (`json`) and its name (`as_json`)
    for param in command.params:
        if param.param_type_name != "option" or not param.name or param.name == "help":
            continue
        options[param.name] = param
        options.update({flag[2:].replace("-", "_"): param for flag in param.opts if flag.startswith("--")})
    ctx = typer.Context(command)
    out = {}
    for key, value in _normalised(table).items():
        option, shown = options.get(key), key.replace("_", "-")
        if option is None:
            known = sorted({flag[2:] for param in options.values() for flag in param.opts if flag.startswith("--")})
            raise UsageError(f"config file {path}: [{where}] {shown}: not an option of "
                             f"`emo {where.replace('.', ' ')}` (its options: {', '.join(known)})")  # fmt: skip
        try:
            if option.multiple and not isinstance(value, list):
                raise typer.BadParameter(f"expected a list, e.g. {shown} = [{value!r}]")
            option.process_value(ctx, value)
        except typer.BadParameter as exc:
            raise UsageError(f"config file {path}: [{where}] {shown} = {value!r}: {exc.message}") from None
        out[option.name] = value
    return out
