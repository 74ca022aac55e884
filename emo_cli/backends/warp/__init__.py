"""The `warp` backend: a talking or singing portrait on the CPU from models bundled in mediapipe.

This module is imported by `emo validate` and `emo plan` to read the options schema, so it
imports nothing heavy (no torch, ever; mediapipe, OpenCV and SciPy only inside methods).
"""

from emo_cli.backends.warp.backend import WarpBackend, WarpRenderer

__all__ = ["WarpBackend", "WarpRenderer"]
