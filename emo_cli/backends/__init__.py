"""Backends: the registry, the interface, and the built-in warp (CPU) and emo (diffusion) plugins.

The names load on first use, so that importing one backend's light module (a plugin's command
line, its options schema) does not load the others.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {
    "Backend": "base",
    "ChunkOutput": "base",
    "JobInput": "base",
    "JobRenderer": "base",
    "State": "base",
    "DEFAULT_BACKEND": "registry",
    "backend_names": "registry",
    "get_backend_class": "registry",
    "register_backend": "registry",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'emo_cli.backends' has no attribute {name!r}")
    return getattr(import_module(f"emo_cli.backends.{home}"), name)
