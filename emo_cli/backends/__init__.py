"""Backends: the registry, the interface, and the built-in warp (CPU) and emo (diffusion) plugins.

The names load on first use, so that importing one backend's light module (a plugin's command
line, its options schema) does not load the others.
"""

from __future__ import annotations

from emo_cli.lazy import lazy_attributes

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


__getattr__ = lazy_attributes(__name__, _HOMES)
