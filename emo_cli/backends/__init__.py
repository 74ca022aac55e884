"""Backends: the registry, the interface, and the built-in warp (CPU) and emo (diffusion) plugins."""

from emo_cli.backends.base import Backend, ChunkOutput, JobInput, JobRenderer, State
from emo_cli.backends.registry import DEFAULT_BACKEND, backend_names, get_backend_class, register_backend

__all__ = [
    "Backend",
    "ChunkOutput",
    "DEFAULT_BACKEND",
    "JobInput",
    "JobRenderer",
    "State",
    "backend_names",
    "get_backend_class",
    "register_backend",
]
