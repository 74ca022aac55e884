"""Face detection with the model bundled in mediapipe 0.10.21 (no download).

Shared by the `warp` backend (which adds the face mesh) and the `emo` backend (face-region mask).
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

_lock = threading.Lock()
_detectors: dict[int, object] = {}
_warmed: set[object] = set()  # graphs that have run once (their model-loading chatter is over)


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Hide what mediapipe's C++ side writes straight to file descriptor 2 while it loads models.

    Loading prints TensorFlow Lite and absl notices ("Created TensorFlow Lite XNNPACK delegate",
    "Feedback manager requires a model with a single signature...") that are not errors and
    would clutter every `emo render`. Used only around a graph's first run.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _DeferredModule(types.ModuleType):
    """Stands in for a module until something reads an attribute: then imports the real one."""

    def __getattr__(self, attr: str):
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


def _import_mediapipe():
    """mediapipe, imported without importing matplotlib.

    mediapipe's package init imports its drawing helpers, which import matplotlib.pyplot at
    module level: about 0.7 s, more than half of mediapipe's import, for plotting functions
    emo-cli never calls. While mediapipe imports, `matplotlib` and `matplotlib.pyplot` are
    placeholders that import the real modules the moment anything uses them, and they leave
    `sys.modules` right after, so a later `import matplotlib` anywhere gets the real one.
    """
    if "mediapipe" in sys.modules or "matplotlib" in sys.modules:
        import mediapipe

        return mediapipe
    parent, child = _DeferredModule("matplotlib"), _DeferredModule("matplotlib.pyplot")
    parent.pyplot = child  # `import matplotlib.pyplot as plt` binds this
    sys.modules["matplotlib"], sys.modules["matplotlib.pyplot"] = parent, child
    try:
        import mediapipe
    finally:
        for name, placeholder in (("matplotlib", parent), ("matplotlib.pyplot", child)):
            if sys.modules.get(name) is placeholder:
                del sys.modules[name]
    return mediapipe


def _process(graph, rgb: np.ndarray):
    """Run a mediapipe graph on an image (caller holds `_lock`), quietly the first time."""
    if graph in _warmed:
        return graph.process(rgb)
    with _quiet_native_stderr():
        result = graph.process(rgb)
        _warmed.add(graph)
    return result


@dataclass(frozen=True)
class FaceBox:
    """A detected face in pixel coordinates of the image it was found in."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)


def detect_faces(rgb: np.ndarray, min_score: float = 0.5) -> list[FaceBox]:
    """All faces in an RGB uint8 image, largest first.

    Tries the full-range model (model_selection=1, faces up to ~5 m away) and falls back to the
    short-range one, which finds large close-up faces the full-range model sometimes misses.
    """
    height, width = rgb.shape[:2]
    for selection in (1, 0):
        detector = _detector(selection, min_score)
        with _lock:  # mediapipe graphs are not re-entrant
            result = _process(detector, np.ascontiguousarray(rgb))
        faces = []
        for det in result.detections or []:
            box = det.location_data.relative_bounding_box
            x0 = max(0.0, box.xmin * width)
            y0 = max(0.0, box.ymin * height)
            x1 = min(float(width), (box.xmin + box.width) * width)
            y1 = min(float(height), (box.ymin + box.height) * height)
            if x1 > x0 and y1 > y0:
                faces.append(FaceBox(x0, y0, x1, y1, float(det.score[0])))
        if faces:
            return sorted(faces, key=lambda f: f.area, reverse=True)
    return []


def _detector(selection: int, min_score: float):
    key = selection * 1000 + int(min_score * 100)
    with _lock:
        if key not in _detectors:
            mp = _import_mediapipe()

            with _quiet_native_stderr():
                _detectors[key] = mp.solutions.face_detection.FaceDetection(
                    model_selection=selection, min_detection_confidence=min_score
                )
        return _detectors[key]


_meshes: dict[bool, object] = {}


def face_mesh_landmarks(rgb: np.ndarray, refine: bool = True) -> np.ndarray | None:
    """The 478 (refined) or 468 face-mesh landmarks of the face in `rgb` as (N, 2) pixel x, y.

    Runs mediapipe's bundled face mesh in static-image mode on the whole image and returns the
    landmarks of the face it finds (None if it finds none). For several faces, crop to the one
    you want first (see `detect_faces`). `refine` adds the iris points and sharpens lips and eyes.
    """
    points = face_mesh_points(rgb, refine)
    return None if points is None else np.ascontiguousarray(points[:, :2])


def face_mesh_points(rgb: np.ndarray, refine: bool = True) -> np.ndarray | None:
    """`face_mesh_landmarks` with depth: (N, 3) pixel x, y and z.

    mediapipe's z is relative depth (smaller is nearer the camera, 0 near the head's centre) on
    the same scale as x, so it is scaled by the image width like x; the points form a 3-D mesh
    that a rigid fit can rotate (head pose, head speed).
    """
    height, width = rgb.shape[:2]
    with _lock:
        if refine not in _meshes:
            mp = _import_mediapipe()

            with _quiet_native_stderr():
                _meshes[refine] = mp.solutions.face_mesh.FaceMesh(
                    static_image_mode=True,
                    max_num_faces=1,
                    refine_landmarks=refine,
                    min_detection_confidence=0.5,
                )
        result = _process(_meshes[refine], np.ascontiguousarray(rgb))
    if not result.multi_face_landmarks:
        return None
    points = result.multi_face_landmarks[0].landmark
    return np.array([(p.x * width, p.y * height, p.z * width) for p in points], dtype=np.float64)
