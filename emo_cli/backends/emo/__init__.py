"""The `emo` backend: the EMO audio-to-video diffusion model, from a local weights folder.

`backend.py` holds `EmoBackend` (options schema, weights identity, plan-time checks: no torch);
`renderer.py` and `pipeline.py` hold the torch code. The names load on first use, so that the
emo backend's `emo weights` commands (`cli.py`) can be listed without importing the backend.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["EmoBackend"]


def __getattr__(name: str) -> Any:
    """`EmoBackend` and the other public names of `backend.py`, imported on first use."""
    if not name.startswith("_"):
        backend = import_module("emo_cli.backends.emo.backend")
        if hasattr(backend, name):
            return getattr(backend, name)
    raise AttributeError(f"module 'emo_cli.backends.emo' has no attribute {name!r}")
