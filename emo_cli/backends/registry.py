"""Backends plug in through the `emo_cli.backends` entry-point group.

The built-in `warp` and `emo` backends register there like any third-party package would
(see pyproject.toml). `register_backend` adds one in-process (tests, notebooks).
"""

from __future__ import annotations

from importlib.metadata import entry_points

from emo_cli.backends.base import Backend
from emo_cli.errors import BackendError

GROUP = "emo_cli.backends"
DEFAULT_BACKEND = "warp"

_registered: dict[str, type[Backend]] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Register a backend class in this process (usable as a decorator)."""
    _registered[cls.name] = cls
    return cls


def backend_names() -> list[str]:
    names = set(_registered) | {ep.name for ep in entry_points(group=GROUP)}
    return sorted(names)


def get_backend_class(name: str) -> type[Backend]:
    """The backend class called `name`. Imports its module, which must not import torch."""
    if name in _registered:
        return _registered[name]
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            try:
                cls = ep.load()
            except ImportError as exc:
                raise BackendError(
                    f"backend {name!r} is installed but cannot be imported ({exc}); "
                    "reinstall emo-cli or the package that provides it"
                ) from exc
            if not (isinstance(cls, type) and issubclass(cls, Backend)):
                raise BackendError(f"entry point {ep.value} for backend {name!r} is not a Backend subclass")
            return cls
    known = ", ".join(backend_names()) or "none"
    raise BackendError(f"unknown backend {name!r} (installed backends: {known})")
