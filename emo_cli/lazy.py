"""A package's public names, each imported from its module on first use (PEP 562).

A package lists where each name lives; importing the package (or one light module of it)
then loads none of its heavier siblings: `emo --help` and `emo validate` stay fast.

    __getattr__ = lazy_attributes(__name__, {"Backend": "base", "get_backend_class": "registry"})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_attributes(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that imports `package.<homes[name]>` and returns its
    `name`; any other name is an AttributeError, as for a module without it."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{home}"), name)

    return __getattr__
