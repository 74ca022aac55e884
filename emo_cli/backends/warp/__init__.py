"""The `warp` backend: a talking or singing portrait on the CPU from models bundled in mediapipe.

`WarpBackend` (backend.py) is imported by `emo validate` and `emo plan` to read the options
schema, so it imports nothing heavy (no torch, ever; NumPy, mediapipe, OpenCV and SciPy only
inside methods); `WarpRenderer` (renderer.py), the per-frame NumPy and OpenCV work, loads when
a job starts.
"""

from __future__ import annotations

from typing import Any

from emo_cli.backends.warp.backend import WarpBackend

__all__ = ["WarpBackend", "WarpRenderer"]


def __getattr__(name: str) -> Any:
    if name == "WarpRenderer":
        from emo_cli.backends.warp.renderer import WarpRenderer

        return WarpRenderer
    raise AttributeError(f"module 'emo_cli.backends.warp' has no attribute {name!r}")
