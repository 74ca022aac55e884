"""Backends plug in through the `emo_cli.backends` entry-point group.

The built-in `warp` and `emo` backends register there like any third-party package would
(see pyproject.toml). `register_backend` adds one in-process (tests, notebooks).

A backend is loaded when something asks for it by name. One that cannot be loaded, whatever
its module raises, or whose options schema is not a valid JSON Schema, becomes a
`BackendError` naming it: only the manifests that use it fail, each with that one message.
"""

from __future__ import annotations

import sys
from typing import Any

from emo_cli.backends.base import Backend
from emo_cli.errors import BackendError

GROUP = "emo_cli.backends"
DEFAULT_BACKEND = "warp"

_registered: dict[str, type[Backend]] = {}
_loaded: dict[str, type[Backend]] = {}  # entry points loaded and checked in this process


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Register a backend class in this process (usable as a decorator)."""
    _registered[cls.name] = cls
    return cls


_scanned: dict[tuple[str, tuple[str, ...]], tuple[Any, ...]] = {}


def installed_entry_points(group: str) -> tuple[Any, ...]:
    """The entry points of `group` installed on the current `sys.path`. Finding them reads
    every installed package's metadata, so it is done once per group and import path."""
    key = (group, tuple(sys.path))
    if key not in _scanned:
        from importlib.metadata import entry_points

        _scanned[key] = tuple(entry_points(group=group))
    return _scanned[key]


def backend_names() -> list[str]:
    names = set(_registered) | {ep.name for ep in installed_entry_points(GROUP)}
    return sorted(names)


def get_backend_class(name: str) -> type[Backend]:
    """The backend class called `name`. Imports its module, which must not import torch."""
    if name in _registered:
        cls = _registered[name]
        _check_options_schema(name, cls)
        return cls
    if name in _loaded:
        return _loaded[name]
    for ep in installed_entry_points(GROUP):
        if ep.name == name:
            try:
                cls = ep.load()
            except Exception as exc:  # whatever a plugin's import raises, it is this backend's problem
                raise BackendError(
                    f"backend {name!r} is installed but cannot be imported ({type(exc).__name__}: {exc}); "
                    "reinstall emo-cli or the package that provides it"
                ) from exc
            if not (isinstance(cls, type) and issubclass(cls, Backend)):
                raise BackendError(f"entry point {ep.value} for backend {name!r} is not a Backend subclass")
            _check_options_schema(name, cls)
            _loaded[name] = cls
            return cls
    known = ", ".join(backend_names()) or "none"
    raise BackendError(f"unknown backend {name!r} (installed backends: {known})")


_schemas_checked: set[int] = set()  # ids of options schemas found valid


def _check_options_schema(name: str, cls: type[Backend]) -> None:
    # emo-cli's own backends' schemas are checked by its tests (the effective schema is a valid
    # JSON Schema), not at every start of `emo validate`: the check costs as much as the backend's import.
    if id(cls.options_schema) in _schemas_checked or cls.__module__.startswith("emo_cli."):
        return
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(dict(cls.options_schema))
        _schemas_checked.add(id(cls.options_schema))
    except SchemaError as exc:
        raise BackendError(
            f"backend {name!r} declares an invalid options_schema ({exc.message}); "
            "upgrade or uninstall the package that provides it"
        ) from exc
